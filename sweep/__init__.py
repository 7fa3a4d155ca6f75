"""The sweep: architecture x regime x seed x train size on Ray Tune (python -m sweep.run)."""
