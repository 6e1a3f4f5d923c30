"""What the notebooks show: figures, ipywidgets panels, notebook helpers and the demo.

Layer 5 (may import every layer below). A new plot, widget or notebook helper goes here.
"""
