"""The `feature-reuse` console command: one entry point for the project's four CLIs."""
