"""The analysis stage: descriptive statistics over seeds (`stats`), the tests against the baseline
(`significance`, `comparisons`: seed-level t, per-image McNemar, Holm, MDD) and the Findings text (`findings`)."""
