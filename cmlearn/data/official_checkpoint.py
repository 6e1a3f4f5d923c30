"""The file format of the paper's released CIFAR-10 checkpoints: Flax's msgpack serialization, read and written.

openai/consistency_models_cifar10 saves its training state with ``flax.serialization.to_bytes`` (jcm/checkpoints.py
``save_checkpoint``): the state (a ``flax.struct.dataclass``: ``step, lr, ema_rate, params, [target_params,]
params_ema, model_state, opt_state, rng_state``, jcm/models/utils.py ``State`` / ``StateWithTarget``) becomes a
tree of dicts (lists and tuples as dicts keyed "0", "1", ...) and is packed with msgpack. Arrays are msgpack
extension objects (flax/serialization.py ``_msgpack_ext_pack``):

* code 1, ndarray: the payload is itself msgpack of ``(shape, dtype name, C-order bytes)``;
* code 2, a Python complex: msgpack of ``(real, imag)``;
* code 3, a NumPy scalar: an ndarray payload of shape ();

and arrays over 2**30 bytes are split into ``{"__msgpack_chunked_array__": True, "shape": ..., "chunks": ...}``.

The container is read with the maintained ``msgpack`` library (Flax's own dependency for this format); only the
three extension hooks above are written here, so JAX and Flax are not needed. ``write_flax_msgpack`` produces the
same bytes layout (tests and course notebooks build small checkpoints with it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

NDARRAY, NATIVE_COMPLEX, NPSCALAR = 1, 2, 3  # flax.serialization._MsgpackExtType
CHUNKED = "__msgpack_chunked_array__"


def _array_from_payload(data: bytes) -> np.ndarray:
    shape, dtype_name, buffer = msgpack.unpackb(data, raw=True)
    name = dtype_name.decode() if isinstance(dtype_name, bytes) else dtype_name
    if name == "bfloat16":
        raise ValueError("bfloat16 arrays are not supported (the released CIFAR-10 checkpoints are float32)")
    return np.frombuffer(buffer, dtype=np.dtype(name)).reshape(shape).copy()


def _ext_hook(code: int, data: bytes):
    if code == NDARRAY:
        return _array_from_payload(data)
    if code == NPSCALAR:
        return _array_from_payload(data)[()]
    if code == NATIVE_COMPLEX:
        re, im = msgpack.unpackb(data)
        return complex(re, im)
    return msgpack.ExtType(code, data)


def _unchunk(tree):
    if isinstance(tree, dict):
        if tree.get(CHUNKED) is True:
            shape = tuple(tree["shape"][str(i)] for i in range(len(tree["shape"])))
            chunks = [tree["chunks"][str(i)] for i in range(len(tree["chunks"]))]
            return np.concatenate(chunks).reshape(shape)
        return {k: _unchunk(v) for k, v in tree.items()}
    return tree


def read_flax_msgpack(path: str | Path) -> dict:
    """The state dict of a file written by ``flax.serialization.to_bytes``: nested dicts of NumPy arrays and
    Python scalars. Raises ValueError (naming the file) for anything that is not such a file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        tree = msgpack.unpackb(path.read_bytes(), ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except (msgpack.exceptions.ExtraData, msgpack.exceptions.FormatError, msgpack.exceptions.StackError,
            ValueError, TypeError) as err:
        raise ValueError(f"{path} is not a Flax msgpack checkpoint: {err}") from err
    if not isinstance(tree, dict):
        raise ValueError(f"{path} is not a Flax msgpack checkpoint (top level is {type(tree).__name__}, not a dict)")
    return _unchunk(tree)


def _ext_default(obj: Any):
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise ValueError("object arrays cannot be serialized")
        payload = msgpack.packb((obj.shape, obj.dtype.name, obj.tobytes("C")), use_bin_type=True)
        return msgpack.ExtType(NDARRAY, payload)
    if isinstance(obj, np.generic):
        arr = np.asarray(obj)
        payload = msgpack.packb((arr.shape, arr.dtype.name, arr.tobytes("C")), use_bin_type=True)
        return msgpack.ExtType(NPSCALAR, payload)
    if isinstance(obj, complex):
        return msgpack.ExtType(NATIVE_COMPLEX, msgpack.packb((obj.real, obj.imag)))
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def _state_dict(tree):
    """Flax's to_state_dict for plain containers: lists and tuples become dicts keyed "0", "1", ..."""
    if isinstance(tree, Mapping):
        return {str(k): _state_dict(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return {str(i): _state_dict(v) for i, v in enumerate(tree)}
    return tree


def write_flax_msgpack(tree: Mapping, path: str | Path) -> Path:
    """Write ``tree`` (nested dicts / lists of arrays and scalars) as ``flax.serialization.to_bytes`` would."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgpack.packb(_state_dict(tree), default=_ext_default, strict_types=True))
    return path


def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """{"a/b/c": leaf} for a nested dict (Flax's parameter paths, "/"-joined)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def unflatten(flat: Mapping[str, Any]) -> dict:
    """The inverse of ``flatten``."""
    tree: dict = {}
    for name, value in flat.items():
        node = tree
        *parents, leaf = name.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree
