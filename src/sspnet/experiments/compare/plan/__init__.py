"""The plan stage: the typed context of a comparison (`context`), its runs with their cached statuses and hashes
(`runs.make_plan`), and the expected wall time from costs measured on this machine (`estimate`)."""
