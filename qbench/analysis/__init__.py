"""The analysis: thresholds, summary, statistics, fits, scaling, recommendations, comparisons, pipeline."""
