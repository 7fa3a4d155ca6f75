"""Analysis: Table II, Fig. 2, statistics and Grad-CAM from the Parquet results."""
