"""No import cycle anywhere in the repository's packages, the mock server's included.

The import-linter contracts (pyproject) keep the client's layers; this checks every pair of
modules of both packages, whatever the contracts say.
"""

from __future__ import annotations

import grimp


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = grimp.build_graph("paradigm_trio", "mock_server")
    cycles = sorted(
        (importer, imported)
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if graph.chain_exists(importer=imported, imported=importer)
    )
    assert cycles == []
