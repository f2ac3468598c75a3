"""Examples that train real networks on fastnn: ``python -m fastnn train <example>``.

``digits``: scikit-learn's handwritten digits with a batch-normalized MLP
(``digits.py``; the command line is ``cli.py``).
"""
