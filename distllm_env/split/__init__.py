"""Split inference (SplitLLM, arXiv 2410.10759): per-layer costs and client/server split plans."""
