"""The report stage: REPORT.md and results.json (`writer`), its tables (`tables`) and the accuracy-vs-eps plot
(`plots`; the growth figures are `sspnet.eval.growth_plots`)."""
