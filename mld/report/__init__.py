"""The report stage: from the run outputs to `results/tables.md`, its CSVs and figures.

results (the long-form runs.csv) and history (its per-epoch companion) collect what the runs
measured; paper (with paper_values.yaml) holds the papers' numbers and claims; tables builds one
frame per paper table and markdown renders them; stats gives the verdicts, claims checks the
papers' claims, figures, claims_figure and curves draw; comparison compares two results files
(`mld compare`) and merge joins several (`mld merge`). Nothing here imports torch.
"""
