"""Session writers: they subscribe to finished records and never block the pipeline for long."""
