import os
import sys

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")

# Tests run against the source tree, whether or not the package is installed.
if PYTHON_DIR not in sys.path:
    sys.path.insert(0, PYTHON_DIR)
