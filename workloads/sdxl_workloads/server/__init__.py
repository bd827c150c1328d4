"""The HTTP inference server behind `sdxl-workload serve` (app factory in `app.py`)."""
