"""The library internals the runner builds on, checked against the ranges pyproject.toml pins (issue 17, row 11).

runbook/run/kernel.py subclasses papermill's engine and execution manager and jupyter_client's kernel client and
channel, and relies on nbclient asking the manager for its client; runbook/run/kernelpool.py subclasses
jupyter_client's LocalProvisioner; runbook/localorg/server.py overrides werkzeug's request handler and builds
on its server; runbook/salesforce/metadata.py builds simple-salesforce's Metadata client itself. None of that
is public API, so pyproject.toml caps these libraries at the tested minor versions. When a new version is let
in, these tests fail at once (imports and signatures, no kernel, no org), naming the library, the internal that
changed and the pinned range.
"""

from __future__ import annotations

import importlib
import inspect
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent.parent
PINS = {Requirement(d).name.lower().replace("_", "-"): Requirement(d).specifier
        for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
CAPPED = ("papermill", "nbclient", "jupyter-client", "werkzeug", "simple-salesforce")


@dataclass(frozen=True)
class Internal:
    """One thing of ``library`` the runner relies on, where it is used, and a check returning what is wrong."""

    library: str
    name: str
    used_by: str
    check: Callable[[], str]


def _obj(path: str):
    module, _, attribute = path.partition(":")
    value = importlib.import_module(module)
    for part in attribute.split(".") if attribute else []:
        value = getattr(value, part)
    return value


def _has(path: str, *attributes: str) -> Callable[[], str]:
    def check() -> str:
        try:
            value = _obj(path)
        except (ImportError, AttributeError) as exc:
            return f"{path} is gone ({exc})"
        missing = [a for a in attributes if not hasattr(value, a)]
        return f"{path} has no {', '.join(missing)}" if missing else ""
    return check


def _takes(path: str, *parameters: str) -> Callable[[], str]:
    def check() -> str:
        try:
            signature = inspect.signature(_obj(path))
        except (ImportError, AttributeError) as exc:
            return f"{path} is gone ({exc})"
        missing = [p for p in parameters if p not in signature.parameters]
        return f"{path}{signature} no longer takes {', '.join(missing)}" if missing else ""
    return check


def _source_says(path: str, *texts: str) -> Callable[[], str]:
    def check() -> str:
        try:
            source = inspect.getsource(_obj(path))
        except (ImportError, AttributeError, OSError, TypeError) as exc:
            return f"{path} is gone ({exc})"
        missing = [t for t in texts if t not in source]
        return f"{path} no longer does {', '.join(map(repr, missing))}" if missing else ""
    return check


def _coroutine(path: str) -> Callable[[], str]:
    def check() -> str:
        try:
            return "" if inspect.iscoroutinefunction(_obj(path)) else f"{path} is no longer a coroutine function"
        except (ImportError, AttributeError) as exc:
            return f"{path} is gone ({exc})"
    return check


METADATA = "runbook/salesforce/metadata.py"
BATCH, POOL, SERVER = "runbook/run/kernel.py", "runbook/run/kernelpool.py", "runbook/localorg/server.py"
INTERNALS = [
    # papermill: the throttled-save engine (papermill_engine)
    Internal("papermill", "papermill_engines.register", BATCH, _has("papermill.engines:papermill_engines", "register")),
    Internal("papermill", "Engine.execute_notebook's parameters (RunbookEngine mirrors it)", BATCH,
             _takes("papermill.engines:NBClientEngine.execute_notebook", "nb", "kernel_name", "output_path",
                    "progress_bar", "log_output", "autosave_cell_every")),
    Internal("papermill", "NBClientEngine.execute_managed_notebook", BATCH,
             _takes("papermill.engines:NBClientEngine.execute_managed_notebook", "nb_man", "kernel_name",
                    "log_output")),
    Internal("papermill", "NotebookExecutionManager (ThrottledSaves)", BATCH,
             _has("papermill.engines:NotebookExecutionManager", "save", "notebook_start", "notebook_complete",
                  "cleanup_pbar")),
    Internal("papermill", "NotebookExecutionManager.__init__'s parameters", BATCH,
             _takes("papermill.engines:NotebookExecutionManager.__init__", "nb", "output_path", "progress_bar",
                    "log_output", "autosave_cell_every")),
    Internal("papermill", "execute_notebook writes the notebook after the engine returns", BATCH,
             _source_says("papermill.execute:execute_notebook", "execute_notebook_with_engine", "write_ipynb(nb")),
    Internal("papermill", "PapermillExecutionError.ename / evalue", BATCH,
             _takes("papermill.exceptions:PapermillExecutionError.__init__", "ename", "evalue")),
    # nbclient: one client shared by the notebooks of a run
    Internal("nbclient", "DeadKernelError", BATCH, _has("nbclient.exceptions:DeadKernelError")),
    Internal("nbclient", "NotebookClient asks the kernel manager for its client", BATCH,
             _source_says("nbclient.client:NotebookClient.async_start_new_kernel_client", "self.km.client(",
                          "wait_for_ready")),
    # jupyter_client: the run's kernel client and channels, the forking provisioner
    Internal("jupyter-client", "BlockingKernelClient (RunKernelClient)", BATCH,
             _has("jupyter_client.blocking.client:BlockingKernelClient", "shell_channel_class", "iopub_channel_class",
                  "channels_running", "kernel_info", "is_alive", "_handle_kernel_info_reply")),
    Internal("jupyter-client", "KernelClient.start_channels' parameters", BATCH,
             _takes("jupyter_client.blocking.client:BlockingKernelClient.start_channels", "shell", "iopub", "stdin",
                    "hb", "control")),
    Internal("jupyter-client", "KernelClient.wait_for_ready(timeout) (run_sync of _async_wait_for_ready)", BATCH,
             _takes("jupyter_client.client:KernelClient._async_wait_for_ready", "timeout")),
    Internal("jupyter-client", "ZMQSocketChannel.get_msg(timeout)", BATCH,
             _takes("jupyter_client.channels:ZMQSocketChannel.get_msg", "timeout")),
    Internal("jupyter-client", "KernelManager(transport, ip, connection_file).start_kernel", BATCH,
             _has("jupyter_client.manager:KernelManager", "start_kernel", "provisioner", "kernel_id", "kernel_spec",
                  "client")),
    Internal("jupyter-client", "LocalProvisioner (ForkingProvisioner)", POOL,
             _has("jupyter_client.provisioning:LocalProvisioner", "process", "pid", "pgid", "connection_info")),
    Internal("jupyter-client", "LocalProvisioner.launch_kernel is async", POOL,
             _coroutine("jupyter_client.provisioning:LocalProvisioner.launch_kernel")),
    Internal("jupyter-client", "KernelSpecManager.get_kernel_spec", POOL,
             _has("jupyter_client.kernelspec:KernelSpecManager", "get_kernel_spec")),
    # werkzeug: the local org's keep-alive handler and bounded server
    Internal("werkzeug", "WSGIRequestHandler.run_wsgi / make_environ / connection_dropped", SERVER,
             _has("werkzeug.serving:WSGIRequestHandler", "run_wsgi", "make_environ", "connection_dropped")),
    Internal("werkzeug", "run_wsgi closes the connection after each request it serves", SERVER,
             _source_says("werkzeug.serving:WSGIRequestHandler.run_wsgi", '"Connection", "close"')),
    Internal("werkzeug", "make_environ puts the socket in werkzeug.socket", SERVER,
             _source_says("werkzeug.serving:WSGIRequestHandler.make_environ", '"werkzeug.socket"')),
    Internal("werkzeug", "BaseWSGIServer.__init__'s parameters", SERVER,
             _takes("werkzeug.serving:BaseWSGIServer.__init__", "host", "port", "app", "handler", "ssl_context",
                    "fd")),
    Internal("werkzeug", "is_ssl_error", SERVER, _has("werkzeug.serving:is_ssl_error")),
    # simple-salesforce: its Metadata client, built on the shared WSDL parse instead of sf.mdapi's own
    Internal("simple-salesforce", "Salesforce caches its Metadata client in _mdapi", METADATA,
             _source_says("simple_salesforce.api:Salesforce.mdapi.fget", "self._mdapi")),
    Internal("simple-salesforce", "SfdcMetadataApi.__init__ sets the attributes metadata_client sets", METADATA,
             _source_says("simple_salesforce.metadata:SfdcMetadataApi.__init__", "self._client", "self._service",
                          "self._session_header", "self._deploy_zip", "self._api_version", "self._instance")),
]


@pytest.mark.parametrize("library", CAPPED)
def test_the_installed_version_is_in_the_pinned_range(library):
    installed, pinned = version(library), PINS.get(library)
    assert pinned is not None and any(s.operator == "<" for s in pinned), \
        f"pyproject.toml must cap {library} (the runner uses its internals); it says {pinned or 'nothing'}"
    assert pinned.contains(installed, prereleases=True), (
        f"{library} {installed} is outside the range pyproject.toml pins ({pinned}); "
        f"{', '.join(sorted({i.used_by for i in INTERNALS if i.library == library}))} use its internals: "
        f"run tests/run/test_library_internals.py with it, then move the pin")


@pytest.mark.parametrize("internal", INTERNALS, ids=[f"{i.library}:{i.name}" for i in INTERNALS])
def test_an_internal_the_runner_uses_is_still_there(internal):
    problem = internal.check()
    assert not problem, (f"{internal.library} {version(internal.library)} (pyproject.toml pins "
                         f"{PINS[internal.library]}): {internal.name} changed, which {internal.used_by} relies on: "
                         f"{problem}")


def test_every_capped_library_has_its_internals_listed():
    assert {i.library for i in INTERNALS} == set(CAPPED)
