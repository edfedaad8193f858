import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def pytest_terminal_summary(terminalreporter):
    module = sys.modules.get("test_onnx_node")
    if module is None or not module.RESULTS:
        return
    results = list(module.RESULTS.values())
    terminalreporter.write_line(
        f"ONNX node tests: {results.count('passed')} matched the expected outputs, "
        f"{results.count('rejected')} known-unsupported variants rejected with a clear error, "
        f"of {len(module.SELECTED)} selected from {len(module.ALL_CASES)} node tests")
