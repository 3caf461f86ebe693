"""MLflow and optuna-dashboard in a real browser: headless Debian Chromium.

A small pipeline run (tasks/cms.yaml, quick and shrunk) writes a sqlite MLflow store and
the Optuna study into a temporary folder. The MLflow server (mlflow/serve.sh when it
exists, else the same lean `mlflow server` command) serves that store on 127.0.0.1, and
Chromium, driven over the DevTools protocol by Playwright's Python package (no browser
download: `executable_path` is the system's /usr/bin/chromium), opens the experiment,
the parent run, and the front plot artifact. The plot counts as rendered when the
artifact viewer's <img> has decoded an image of the logged PNG's own width and height. A screenshot of each
page is kept in build/test-artifacts/ (or $PIPELINE_TEST_ARTIFACTS). Then
optuna-dashboard serves the same study and the page shows it.

Needs the Debian packages `chromium` (and its fonts) and the PyPI package `playwright`;
the test installs nothing and skips if either is missing.

Run: .venv/bin/python -m pytest tests/test_browser.py
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cluster import mlflow_server
from pipeline.cluster.local import local_cluster

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGE_TIMEOUT_MS = 120_000  # the MLflow UI is a large bundle; a loaded 2-core machine is slow
ARTIFACTS = Path(os.environ.get("PIPELINE_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts"))

if CHROMIUM is None:
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished pipeline run in a temporary store: its summary and folder."""
    from pipeline.config import load_task
    from pipeline.driver import execute

    folder = tmp_path_factory.mktemp("browser")
    resolved = load_task(ROOT / "tasks" / "cms.yaml", "quick", [
        f"mlflow.tracking_uri=sqlite:///{folder / 'mlflow.db'}", "mlflow.experiment=browser",
        "search.num_samples=4", "params.stream.universe=2000", "params.stream.length=20000",
        "params.stream.queries=1000",
    ])
    with local_cluster([{"num_cpus": 2}]):
        summary = execute(resolved)
    assert summary["pareto"], "the run produced no front to look at"
    return {"summary": summary, "folder": folder}


def serve_command(store_dir: Path, port: int) -> list[str]:
    """mlflow/serve.sh if the project has it, else the same lean command."""
    script = ROOT / "mlflow" / "serve.sh"
    if script.is_file():
        return ["bash", str(script), "--store", str(store_dir / "mlflow.db"), "--port", str(port)]
    return mlflow_server.default_command(store_dir, port)


@pytest.fixture(scope="module")
def browser():
    # Playwright gives the browser a fresh temporary profile (its --user-data-dir)
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def new_page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    return page


def test_mlflow_ui_shows_experiment_parent_run_and_front_plot(run, browser):
    summary, folder = run["summary"], run["folder"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = mlflow_server.free_port()
    command = serve_command(folder, port)
    with mlflow_server.mlflow_server(folder, port, command=command, log=folder / "server.log") as url:
        page = new_page(browser)
        experiment, parent = summary["experiment_id"], summary["parent_run_id"]

        # the experiment's runs table (the "Model training" view; MLflow 3 opens
        # experiments without a kind tag in its GenAI view) links the parent run
        page.goto(f"{url}/#/experiments/{experiment}/runs?workflowType=machine_learning")
        page.locator(f"a[href*='{parent}']").first.wait_for()
        page.screenshot(path=str(ARTIFACTS / "mlflow_experiment.png"))

        # the parent run: its overview shows the run id, the child runs and front metrics
        page.goto(f"{url}/#/experiments/{experiment}/runs/{parent}")
        page.get_by_text(parent).first.wait_for()
        page.get_by_text("front_size").first.wait_for()
        page.screenshot(path=str(ARTIFACTS / "mlflow_parent_run.png"))

        # the front plot artifact, as the artifact browser renders it (an <img> of a blob)
        page.goto(f"{url}/#/experiments/{experiment}/runs/{parent}/artifacts/front.png")
        page.get_by_text("front.png").first.wait_for()
        image = page.locator("img[src^='blob:']").first
        image.wait_for()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
        shown = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        page.screenshot(path=str(ARTIFACTS / "mlflow_front_plot.png"))
        page.close()

    stored = _artifact_path(summary, "front.png")
    assert tuple(shown) == png_size(stored)  # the browser decoded the very PNG the run logged
    assert (ARTIFACTS / "mlflow_front_plot.png").stat().st_size > 0


def test_optuna_dashboard_shows_the_study(run, browser):
    summary, folder = run["summary"], run["folder"]
    port = mlflow_server.free_port()
    dashboard = subprocess.Popen(
        [str(Path(sys.executable).parent / "optuna-dashboard"), summary["optuna_storage"],
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=open(folder / "dashboard.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        mlflow_server.wait_healthy(url, dashboard, path="/api/studies")
        page = new_page(browser)
        page.goto(f"{url}/dashboard")
        page.get_by_text(summary["optuna_study"]).first.wait_for()
        page.screenshot(path=str(ARTIFACTS / "optuna_dashboard.png"))
        page.close()
    finally:
        mlflow_server.stop(dashboard)


def _run_name(summary: dict) -> str:
    from mlflow.tracking import MlflowClient

    return MlflowClient(summary["tracking_uri"]).get_run(summary["parent_run_id"]).info.run_name


def _artifact_path(summary: dict, name: str) -> Path:
    from urllib.parse import unquote, urlparse

    from mlflow.tracking import MlflowClient

    uri = MlflowClient(summary["tracking_uri"]).get_run(summary["parent_run_id"]).info.artifact_uri
    return Path(unquote(urlparse(uri).path)) / name


@pytest.fixture(scope="module")
def lego_pages(tmp_path_factory):
    """The HTML pages a Lego trial writes (its smallest config, run as a trial runs it)."""
    from pipeline.workloads.base import LocalReporter
    from pipeline.workloads.lego.workload import WORKLOAD

    folder = tmp_path_factory.mktemp("lego-pages")
    WORKLOAD.run(WORKLOAD.make_params(WORKLOAD.smoke_params), LocalReporter(artifact_dir=folder))
    return sorted(folder.glob("*.html"))


def _render_offline(browser, page_path: Path) -> dict:
    """Open a page with every request but file:// refused; count the traces plotly drew."""
    page = new_page(browser)
    refused: list[str] = []

    def route(request_route):
        url = request_route.request.url
        if url.startswith("file://"):
            request_route.continue_()
        else:
            refused.append(url)
            request_route.abort()

    page.route("**/*", route)
    page.goto(page_path.as_uri())
    page.wait_for_function("() => window.Plotly && document.querySelector('.js-plotly-plot')")
    drawn = page.evaluate("""() => {
        const plot = document.querySelector('.js-plotly-plot');
        return {traces: plot.data.length,
                drawn: plot.querySelectorAll('.scatterlayer .trace, .scatterlayer .points').length,
                paths: plot.querySelectorAll('.scatterlayer path').length};
    }""")
    page.screenshot(path=str(ARTIFACTS / f"offline_{page_path.stem}.png"))
    page.close()
    drawn["refused"] = refused
    return drawn


def test_every_html_artifact_renders_offline(run, lego_pages, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pages = [_artifact_path(run["summary"], "front.html"), *lego_pages]
    assert len(pages) >= 2 and all(p.is_file() for p in pages)
    for path in pages:
        drawn = _render_offline(browser, path)
        assert drawn["traces"] > 0 and drawn["drawn"] >= drawn["traces"], f"{path.name}: {drawn}"
        assert drawn["paths"] > 0, f"{path.name}: no marks drawn"
        assert not drawn["refused"], f"{path.name} asked the network for {drawn['refused'][:3]}"
