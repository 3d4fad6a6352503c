"""The eval stage's parts: config (the world's `eval:` section), sources (benchmark data),
lmeval (generation and scoring through lm-eval), judge (InFoBench DRFR), comet (COMET in its
own environment), metrics (pure scoring functions), results (the JSON, the samples, the table)."""
