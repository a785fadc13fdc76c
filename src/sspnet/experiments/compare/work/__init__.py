"""The work of one job (`job.run_job`, the only unit of work whatever the executor): train or resume a run and
evaluate it (`run`, `evaluation`, per-image bits in `perimage`), then the masking audits it completes (`audit`)."""
