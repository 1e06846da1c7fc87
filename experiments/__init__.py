"""Scripts users run: reproduce the paper, train, evaluate, benchmark, report."""
