# SPDX-License-Identifier: GPL-3.0-or-later
"""Running the engine for the add-on, one module per job:

engine      where the engine package is (``backend_root``) and making ``import backend`` find it
            (``import_backend``, run first by the add-on), the worker's environment
            (``worker_environment``), the engine itself for in-process jobs (``load_engine``), RefineError
placement   which Python runs the engine (``Runner``, ``choose_runner``) and on which device
job         a refinement: the request (``View``, ``Request``), its inputs checked by the contract,
            and running it in Blender or in the worker (``Job``)
worker_env  making the worker Python environment (``setup_commands``, ``SetupTask``)

Nothing heavy loads with these modules (numpy, torch and the engine load on first use), so
the panel and the preferences can ask them questions cheaply.
"""
