"""The conformance suite: one set of tests every fastnn backend is judged by.

Layout (read in this order):
- ``oracle.py``    float64 formulas written from the definitions; the judge.
- ``support.py``   tolerances (in one place), comparison and snapshot helpers,
                   memory layouts, the list of backends under test.
- ``opinfo.py``    one entry per public function: sample inputs, the oracle
                   call, the mutable arguments and the bad inputs.
- ``test_ops.py``  generic tests run over every entry, backend and dtype.
- ``test_*.py``    what a table cannot say: gradients by finite differences,
                   numerical edge cases, running statistics, cross-entropy
                   options, PyTorch, properties (hypothesis), the registry.

A backend registered with fastnn is tested by every test here with no other
change: the ``backend`` fixture (``conftest.py``) is parametrized over every
backend ``fastnn.backends()`` reports available.
"""
