"""The README's Python example runs as written (with a shorter training, in a temporary directory)."""

import re
from pathlib import Path

import cmlearn.train.presets

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    real = cmlearn.train.presets.get_preset
    monkeypatch.setattr(cmlearn.train.presets, "get_preset",
                        lambda name, **kw: real(name, **kw).override({"steps": 20, "batch_size": 64}))
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)
    assert scope["x"].shape == (10_000, 2)
    assert (tmp_path / "runs" / "my-cd" / "checkpoints" / "latest.pt").exists()
