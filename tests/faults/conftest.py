"""The fault suite (``tests/faults/``). Its tests add what they tried (bad inputs, kill points,
concurrent scenarios) to the session fixture ``fault_counts`` (``tests/conftest.py``), which
prints the totals at the end of the run — summed over the pytest-xdist workers — and writes them
to ``<pytest basetemp>/fault-counts.json``."""
