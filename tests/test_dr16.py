"""specllm.data.dr16 against recorded fixtures served from a loopback HTTP server (127.0.0.1 only).

Fixtures are written by the tests: spec-lite files are the first four HDUs of the genuine SDSS
DR12 spectrum that ppxf ships (SPECOBJ plate/mjd/fiber/Z rewritten), and the SkyServer answer is
a few rows in SkyServer's CSV format (a '#Table1' line, a header, rows).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from specllm import cli
from specllm.data import dr16
from specllm.errors import InputError

_PPXF = importlib.util.find_spec("ppxf")
PPXF_SPEC = Path(_PPXF.origin).parent / "spectra" / "NGC4636_SDSS_DR12.fits" if _PPXF else None
needs_ppxf = pytest.mark.skipif(
    PPXF_SPEC is None or not PPXF_SPEC.is_file(),
    reason="ppxf's NGC4636_SDSS_DR12.fits (the genuine SDSS spectrum the fixtures copy) is not installed")

SQL_PATH = "/dr16/SkyServerWS/SearchTools/SqlSearch"
SAS_PATH = "/sas/dr16"
GRID = dr16.loglam_grid(3.58, 3.964, 1e-4)


# ------------------------------------------------------------------------------------ fixtures


@functools.cache
def make_spec_lite(plate: int, mjd: int, fiber: int, z: float, loglam_shift: float = 0.0) -> bytes:
    """Bytes of a spec-lite file: HDUs 0-3 of the ppxf SDSS file, SPECOBJ rewritten."""
    import io

    from astropy.io import fits

    with fits.open(PPXF_SPEC, memmap=False) as hdul:
        lite = fits.HDUList([hdul[i] for i in range(4)])
        meta = lite["SPECOBJ"].data
        meta["PLATE"][0], meta["MJD"][0], meta["FIBERID"][0], meta["Z"][0] = plate, mjd, fiber, z
        if loglam_shift:
            lite["COADD"].data["loglam"] += np.float32(loglam_shift)
        buf = io.BytesIO()
        lite.writeto(buf)
    return buf.getvalue()


def pool_rows(n: int = 40) -> list[dict]:
    """n SkyServer-like rows with distinct plate/fiber and redshifts spread over 0 < z < 0.5."""
    rng = np.random.default_rng(3)
    rows = []
    for k in range(n):
        plate, mjd, fiber = 266 + k // 10, 51602 + k // 10, 1 + 7 * (k % 10)
        rows.append({
            "specObjID": str((plate << 50) + (fiber << 38) + ((mjd - 50000) << 24) + (26 << 10)),
            "plate": plate, "mjd": mjd, "fiberID": fiber, "run2d": "26" if k % 4 else "v5_13_0",
            "z": round(0.01 + 0.48 * k / n, 6), "zErr": 1.2e-5, "ra": round(float(rng.uniform(0, 360)), 6),
            "dec": round(float(rng.uniform(-10, 60)), 6),
            **{f"modelMag_{b}": round(17.0 + 0.1 * j, 5) for j, b in enumerate(dr16.BANDS)},
            **{f"modelFlux_{b}": round(10 ** ((22.5 - 17.0 - 0.1 * j) / 2.5), 4) for j, b in enumerate(dr16.BANDS)},
            **{f"modelFluxIvar_{b}": 0.5 for b in dr16.BANDS},
            **{f"extinction_{b}": round(0.1 - 0.01 * j, 5) for j, b in enumerate(dr16.BANDS)},
        })
    return rows


def skyserver_csv(rows: list[dict]) -> str:
    """SkyServer's CSV answer format."""
    lines = ["#Table1", ",".join(dr16.QUERY_COLUMNS)]
    lines += [",".join(str(r[c]) for c in dr16.QUERY_COLUMNS) for r in rows]
    return "\n".join(lines) + "\n"


@dataclass
class Hit:
    path: str
    headers: dict
    time: float
    query: dict


class FakeSDSS:
    """State of the loopback server: files by URL path, requests seen, failures to simulate."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.lazy: dict[str, tuple] = {}        # path -> make_spec_lite arguments
        self.hits: list[Hit] = []
        self.fail_once: dict[str, int] = {}     # path -> status answered once (503, 429)
        self.drop_once: dict[str, int] = {}     # path -> bytes sent before the connection drops
        self.always_fail: dict[str, int] = {}   # path -> status answered every time
        self.range_support = True
        self.lock = threading.Lock()
        self.base = ""

    def paths(self, prefix: str) -> list[str]:
        return [h.path for h in self.hits if h.path.startswith(prefix)]

    def add_spectra(self, rows: list[dict]) -> None:
        """Serve a spec-lite file per row (made on first request: writing FITS takes ~0.1 s)."""
        for r in rows:
            url = dr16.spec_lite_url(r["run2d"], r["plate"], r["mjd"], r["fiberID"], self.base + SAS_PATH)
            self.lazy[urlsplit(url).path] = (r["plate"], r["mjd"], r["fiberID"], r["z"])

    def body(self, path: str) -> bytes | None:
        if path not in self.files and path in self.lazy:
            self.files[path] = make_spec_lite(*self.lazy.pop(path))
        return self.files.get(path)


def _handler(state: FakeSDSS):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection; close marks the end

        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            url = urlsplit(self.path)
            with state.lock:
                state.hits.append(Hit(url.path, dict(self.headers), time.monotonic(), parse_qs(url.query)))
                fail = state.fail_once.pop(url.path, None) or state.always_fail.get(url.path)
                drop = state.drop_once.pop(url.path, None)
            if fail:
                return self._send(fail, b"busy", {"Retry-After": "0"})
            with state.lock:
                body = state.body(url.path)
            if body is None:
                return self._send(404, b"not found")
            start, status, headers = 0, 200, {"Content-Type": "application/octet-stream"}
            m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if m and state.range_support:
                start = int(m.group(1))
                if start >= len(body):
                    return self._send(416, b"", {"Content-Range": f"bytes */{len(body)}"})
                status = 206
                headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
            payload = body[start:]
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if drop is not None:  # announce the full length, send part of it, hang up
                self.wfile.write(payload[:drop])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(payload)

    return Handler


@pytest.fixture
def sdss():
    state = FakeSDSS()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def client(min_interval: float = 0.0, retries: int = 3) -> dr16.HttpClient:
    session = requests.Session()
    session.trust_env = False  # never send loopback requests through a proxy from the environment
    return dr16.HttpClient(session, min_interval=min_interval, retries=retries, backoff=0.01, timeout=(2.0, 5.0))


def serve_pool(state: FakeSDSS, rows: list[dict]) -> None:
    state.files[SQL_PATH] = skyserver_csv(rows).encode()
    state.add_spectra(rows)


def fetch(state: FakeSDSS, cache: Path, c: dr16.HttpClient | None = None, **kw):
    """fetch_and_build as the fetch_dr16 stage calls it; data/dr16's files go to <cache>/../source."""
    kw = {"n": 6, "n_bins": 3, "seed": 1, "z_min": 0.0, "z_max": 0.5, "i_max": 18.0, "pool": 40, "loglam": GRID,
          "progress": False, "log": lambda m: None, **kw}
    return dr16.fetch_and_build(cache=cache, out=cache.with_name("source"), skyserver_url=state.base + SQL_PATH,
                                sas_url=state.base + SAS_PATH, client=c or client(), **kw)


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


# ------------------------------------------------------------------------------ query, sample


def test_query_has_the_paper_cuts():
    sql = dr16.galaxy_query(1234, 0.0, 0.5, 18.0)
    assert sql.startswith("SELECT TOP 1234")
    for part in ("FROM SpecObj AS s", "JOIN PhotoObj AS p ON p.objID = s.bestObjID", "s.class = 'GALAXY'",
                 "s.zWarning = 0", "s.z > 0.0", "s.z < 0.5", "p.modelMag_i - p.extinction_i < 18.0",
                 "s.plate", "s.mjd", "s.fiberID", "s.run2d", "s.ra", "s.dec", "p.extinction_z", "ORDER BY s.specObjID"):
        assert part in sql


def test_parse_skyserver_csv():
    rows = pool_rows(5)
    df = dr16.parse_skyserver_csv(skyserver_csv(rows))
    assert len(df) == 5 and list(df.columns) == list(dr16.QUERY_COLUMNS)
    assert df["run2d"].tolist() == ["v5_13_0", "26", "26", "26", "v5_13_0"]  # text, not numbers
    assert df["plate"].dtype == np.int64 and df["specObjID"].iloc[0] == rows[0]["specObjID"]
    assert df["z"].tolist() == pytest.approx([r["z"] for r in rows])


def test_parse_skyserver_csv_errors():
    with pytest.raises(InputError, match="not a SkyServer CSV table.*Incorrect syntax") as err:
        dr16.parse_skyserver_csv("<html><body>Error: Incorrect syntax near 'FORM'</body></html>", "http://x/SqlSearch")
    assert err.value.file == "http://x/SqlSearch" and err.value.field == "#Table1"
    with pytest.raises(InputError) as err:
        dr16.parse_skyserver_csv("#Table1\nplate,mjd,fiberID,z,ra,dec\n266,51602,1,0.1,1,2\n")
    assert err.value.field == "run2d"
    with pytest.raises(InputError, match="no rows"):
        dr16.parse_skyserver_csv("#Table1\n" + ",".join(dr16.QUERY_COLUMNS) + "\n")


def test_equal_frequency_bins():
    rng = np.random.default_rng(0)
    z = rng.gamma(2.0, 0.08, size=1000)
    pool = pd.DataFrame({"plate": np.arange(1000) // 100 + 266, "mjd": 51602, "fiberID": np.arange(1000) % 100 + 1,
                         "run2d": "26", "z": z})
    edges = dr16.equal_frequency_edges(z, 5)
    assert np.allclose(edges, np.quantile(z, [0, 0.2, 0.4, 0.6, 0.8, 1.0]))
    assert np.bincount(dr16.assign_bins(z, edges)).tolist() == [200] * 5
    sample = dr16.select_equal_frequency(pool, 52, 5, seed=7)
    assert len(sample) == 52 and np.bincount(sample["z_bin"]).tolist() == [11, 11, 10, 10, 10]
    for k in range(5):  # every draw lies inside its bin
        zk = sample.loc[sample["z_bin"] == k, "z"]
        assert zk.min() >= edges[k] and zk.max() <= edges[k + 1]
    again = dr16.select_equal_frequency(pool.sample(frac=1.0, random_state=1), 52, 5, seed=7)
    pd.testing.assert_frame_equal(sample, again)  # independent of the pool's row order
    assert not sample.equals(dr16.select_equal_frequency(pool, 52, 5, seed=8))
    with pytest.raises(InputError, match="raise --pool"):
        dr16.select_equal_frequency(pool.head(20), 30, 5, seed=7)


@settings(max_examples=60, deadline=None)
@given(n_bins=st.integers(1, 12), per_bin=st.integers(1, 20), extra=st.integers(0, 11), seed=st.integers(0, 2**32 - 1))
def test_equal_frequency_quota_property(n_bins, per_bin, extra, seed):
    n = n_bins * per_bin + extra % n_bins
    z = np.random.default_rng(seed).uniform(0.0, 0.5, 3 * n + 3 * n_bins)
    pool = pd.DataFrame({"plate": 266, "mjd": 51602, "fiberID": np.arange(z.size) + 1, "run2d": "26", "z": z})
    sample = dr16.select_equal_frequency(pool, n, n_bins, seed)
    counts = np.bincount(sample["z_bin"], minlength=n_bins)
    assert counts.sum() == n and counts.max() - counts.min() <= 1 and sample["fiberID"].is_unique


def test_spec_lite_url_layout():
    assert dr16.spec_lite_url("26", 266, 51602, 1) == (
        "https://data.sdss.org/sas/dr16/sdss/spectro/redux/26/spectra/lite/0266/spec-0266-51602-0001.fits")
    assert dr16.spec_lite_url("v5_13_0", 3586, 55181, 12, "http://h/sas/dr16/") == (
        "http://h/sas/dr16/eboss/spectro/redux/v5_13_0/spectra/lite/3586/spec-3586-55181-0012.fits")


# ------------------------------------------------------------------------------- FITS reading


@needs_ppxf
def test_read_spec_lite(tmp_path):
    path = tmp_path / dr16.spec_lite_name(1234, 55555, 77)
    path.write_bytes(make_spec_lite(1234, 55555, 77, 0.25))
    spec = dr16.read_spec_lite(path)
    assert (spec["plate"], spec["mjd"], spec["fiber"]) == (1234, 55555, 77)
    assert spec["z"] == pytest.approx(0.25)
    assert spec["loglam"].shape == spec["flux"].shape == spec["ivar"].shape == (3838,)
    assert spec["loglam"][0] == pytest.approx(3.5808, abs=1e-6)
    wrong = tmp_path / dr16.spec_lite_name(1234, 55555, 78)
    wrong.write_bytes(path.read_bytes())
    with pytest.raises(InputError, match="not what its name says"):
        dr16.read_spec_lite(wrong)


@needs_ppxf
@pytest.mark.parametrize("damage", ["half", "tail", "html", "empty"])
def test_corrupt_fits_names_the_file(tmp_path, damage):
    good = make_spec_lite(266, 51602, 1, 0.1)
    bad = {"half": good[: len(good) // 2], "tail": good[:-2880], "html": b"<html>503 Service Unavailable</html>",
           "empty": b""}[damage]
    path = tmp_path / "spec-0266-51602-0001.fits"
    path.write_bytes(bad)
    with pytest.raises(InputError) as err:
        dr16.read_spec_lite(path)
    assert err.value.file == str(path)
    assert "delete" in err.value.fix and str(path) in err.value.fix and "fetch-dr16" in err.value.fix
    assert re.search("corrupt|truncated", err.value.problem)


@needs_ppxf
def test_missing_coadd_column(tmp_path):
    import io

    from astropy.io import fits

    with fits.open(io.BytesIO(make_spec_lite(266, 51602, 1, 0.1))) as hdul:
        cols = [c for c in hdul["COADD"].columns if c.name != "ivar"]
        hdus = [hdul[0], fits.BinTableHDU.from_columns(cols, name="COADD"), hdul[2], hdul[3]]
        path = tmp_path / "spec-0266-51602-0001.fits"
        fits.HDUList(hdus).writeto(path)
    with pytest.raises(InputError) as err:
        dr16.read_spec_lite(path)
    assert err.value.field == "COADD.ivar"


def test_resample_aligned_and_shifted():
    lam = 3.6 + 1e-4 * np.arange(100)
    flux = np.arange(100, dtype=float)
    ivar = np.ones(100)
    ivar[10] = 0.0
    f, iv = dr16.resample_to_grid(lam.astype(np.float32), flux, ivar, GRID)
    k0 = 200  # 3.6 is pixel 200 of the 3.58 grid
    assert f[k0:k0 + 100].tolist() == flux.tolist() and iv[k0 + 10] == 0 and iv[k0 + 11] == 1
    assert not f[:k0].any() and not iv[:k0].any() and not iv[k0 + 100:].any()
    f, iv = dr16.resample_to_grid(lam + 0.5e-4, flux, ivar, GRID)  # half a pixel off: interpolated
    assert f[k0 + 50] == pytest.approx(49.5) and iv[k0 + 50] == pytest.approx(1.0)
    assert iv[k0 + 10] == 0 and iv[k0 + 11] == 0 and iv[k0] == 0  # neighbours of a bad pixel, and off the edge


# --------------------------------------------------------------------------- download + build


@needs_ppxf
def test_fetch_downloads_checksums_and_builds(sdss, tmp_path):
    rows = pool_rows()
    serve_pool(sdss, rows)
    out = tmp_path / "dr16"
    summary = fetch(sdss, out)
    assert summary["downloads"]["downloaded"] == 6 and summary["missing"] == []
    query_hit = [h for h in sdss.hits if h.path == SQL_PATH]
    assert len(query_hit) == 1 and query_hit[0].query["format"] == ["csv"]
    assert query_hit[0].query["cmd"][0] == (out / "query.sql").read_text().strip()
    assert (out / "query.csv").read_text().startswith("#Table1")
    sample = pd.read_csv(out / "sample.csv", dtype={"run2d": str})
    assert np.bincount(sample["z_bin"]).tolist() == [2, 2, 2]
    checks = json.loads((out / "spectra" / "manifest.json").read_text())["files"]
    assert len(checks) == 6
    for name, rec in checks.items():
        data = (out / "spectra" / name).read_bytes()
        served = sdss.body(urlsplit(rec["url"]).path)
        assert rec["sha256"] == hashlib.sha256(data).hexdigest() == hashlib.sha256(served).hexdigest()
    assert not list((out / "spectra").glob("*.part"))
    # data/dr16: data/raw's galaxy files
    raw = out.with_name("source")
    gal = pd.read_csv(raw / "galaxies.csv", dtype={"run2d": str})
    assert list(gal.columns) == list(dr16.GALAXY_COLUMNS) and len(gal) == 6
    ids = [p * 10**9 + m * 10**4 + f for p, m, f in sample[["plate", "mjd", "fiberID"]].to_numpy()]
    assert gal["gal_id"].tolist() == ids
    assert gal["z"].tolist() == pytest.approx(sample["z"].tolist(), abs=1e-6)
    assert gal["ra"].tolist() == pytest.approx(sample["ra"].tolist())
    assert gal["flux_r"].tolist() == pytest.approx(sample["modelFlux_r"].tolist())
    assert gal["mag_r"].tolist() == pytest.approx((sample["modelMag_r"] - sample["extinction_r"]).tolist(), abs=1e-4)
    assert gal["i_dered"].tolist() == gal["mag_i"].tolist() and gal["z_bin"].tolist() == sample["z_bin"].tolist()
    assert gal["run2d"].tolist() == sample["run2d"].tolist()
    flux, ivar = np.load(raw / "spectra_flux.npy"), np.load(raw / "spectra_ivar.npy")
    assert flux.dtype == ivar.dtype == np.float32 and flux.shape == ivar.shape == (6, len(GRID))
    assert np.array_equal(np.load(raw / "loglam.npy"), GRID)
    spec = dr16.read_spec_lite(out / "spectra" / dr16.spec_lite_name(*sample.loc[0, ["plate", "mjd", "fiberID"]]))
    k = int(round((spec["loglam"][0] - GRID[0]) / 1e-4))  # 8: the fixture starts at 3.5808, runs past 3.964
    m = len(GRID) - k
    assert np.array_equal(flux[0, k:], spec["flux"][:m].astype(np.float32))
    assert np.array_equal(ivar[0, k:], spec["ivar"][:m].astype(np.float32)) and not ivar[0, :k].any()
    manifest = json.loads((raw / "manifest.json").read_text())
    assert manifest["n_galaxies"] == 6 and manifest["loglam"]["n"] == len(GRID)
    flux_sha = hashlib.sha256((raw / "spectra_flux.npy").read_bytes()).hexdigest()
    assert manifest["files"]["spectra_flux.npy"]["sha256"] == flux_sha
    # a second run asks the servers nothing: query reused, every file verified against the manifest
    before = len(sdss.hits)
    again = fetch(sdss, out)
    assert len(sdss.hits) == before and again["requests"] == 0
    assert again["downloads"]["verified"] == 6 and again["downloads"]["downloaded"] == 0


@needs_ppxf
def test_resume_after_dropped_connection(sdss, tmp_path):
    rows = pool_rows(1)
    sdss.add_spectra(rows)
    url = dr16.spec_lite_url(rows[0]["run2d"], 266, 51602, 1, sdss.base + SAS_PATH)
    path = urlsplit(url).path
    half = len(sdss.body(path)) // 2
    sdss.drop_once[path] = half
    dest = tmp_path / "spec-0266-51602-0001.fits"
    size = dr16.download_file(client(), url, dest)
    assert size == len(sdss.files[path]) and dest.read_bytes() == sdss.files[path]
    hits = [h for h in sdss.hits if h.path == path]
    assert len(hits) == 2 and "Range" not in hits[0].headers
    resumed_at = int(re.fullmatch(r"bytes=(\d+)-", hits[1].headers["Range"]).group(1))
    assert 0 < resumed_at <= half  # whatever reached the .part (whole chunks) is kept
    assert not dest.with_name(dest.name + ".part").exists()


@needs_ppxf
def test_resume_a_part_file_from_an_earlier_run(sdss, tmp_path):
    rows = pool_rows(1)
    serve_pool(sdss, rows)
    path = urlsplit(dr16.spec_lite_url(rows[0]["run2d"], 266, 51602, 1, sdss.base + SAS_PATH)).path
    spectra = tmp_path / "dr16" / "spectra"
    spectra.mkdir(parents=True)
    (spectra / "spec-0266-51602-0001.fits.part").write_bytes(sdss.body(path)[:10000])
    fetch(sdss, tmp_path / "dr16", n=1, n_bins=1, pool=1)
    hits = [h for h in sdss.hits if h.path == path]
    assert [h.headers.get("Range") for h in hits] == ["bytes=10000-"]
    assert (spectra / "spec-0266-51602-0001.fits").read_bytes() == sdss.files[path]


@needs_ppxf
def test_complete_part_file_is_kept_on_416(sdss, tmp_path):
    rows = pool_rows(1)
    sdss.add_spectra(rows)
    url = dr16.spec_lite_url(rows[0]["run2d"], 266, 51602, 1, sdss.base + SAS_PATH)
    body = sdss.body(urlsplit(url).path)
    dest = tmp_path / "spec-0266-51602-0001.fits"
    dest.with_name(dest.name + ".part").write_bytes(body)  # interrupted between the last byte and the rename
    assert dr16.download_file(client(), url, dest) == len(body) and dest.read_bytes() == body
    assert [h.headers.get("Range") for h in sdss.hits] == [f"bytes={len(body)}-"]


@needs_ppxf
def test_server_without_range_support_restarts(sdss, tmp_path):
    rows = pool_rows(1)
    sdss.add_spectra(rows)
    sdss.range_support = False
    url = dr16.spec_lite_url(rows[0]["run2d"], 266, 51602, 1, sdss.base + SAS_PATH)
    dest = tmp_path / "spec-0266-51602-0001.fits"
    dest.with_name(dest.name + ".part").write_bytes(b"stale bytes")
    dr16.download_file(client(), url, dest)
    assert dest.read_bytes() == sdss.files[urlsplit(url).path]


@needs_ppxf
def test_retry_on_503_and_429(sdss, tmp_path):
    rows = pool_rows(8)
    serve_pool(sdss, rows)
    sdss.fail_once[SQL_PATH] = 503
    first = urlsplit(dr16.spec_lite_url(rows[0]["run2d"], rows[0]["plate"], rows[0]["mjd"], rows[0]["fiberID"],
                                        sdss.base + SAS_PATH)).path
    sdss.fail_once[first] = 429
    summary = fetch(sdss, tmp_path / "dr16", n=8, n_bins=2, pool=8)
    assert summary["downloads"]["downloaded"] == 8
    assert sdss.paths(SQL_PATH) == [SQL_PATH] * 2 and sdss.paths(first) == [first] * 2


def test_http_errors_after_retries(sdss):
    sdss.files["/busy"] = b"x"
    sdss.always_fail["/busy"] = 503
    with pytest.raises(InputError) as err:
        client(retries=2).get(sdss.base + "/busy")
    assert err.value.field == "HTTP 503" and "3 times" in err.value.problem and "PROFILE=small" in err.value.fix
    assert sdss.paths("/busy") == ["/busy"] * 3


@needs_ppxf
def test_rate_limit_spaces_requests(sdss, tmp_path):
    rows = pool_rows(4)
    serve_pool(sdss, rows)
    c = client(min_interval=0.12)
    fetch(sdss, tmp_path / "dr16", c, n=4, n_bins=2, pool=4)
    assert len(c.request_times) == 5 == len(sdss.hits)  # the query and four files
    assert np.all(np.diff(c.request_times) >= 0.12)
    assert np.all(np.diff([h.time for h in sdss.hits]) >= 0.11)  # as the server saw them


@needs_ppxf
def test_checksum_mismatch_is_downloaded_once_then_an_error(sdss, tmp_path):
    rows = pool_rows(2)
    serve_pool(sdss, rows)
    out = tmp_path / "dr16"
    fetch(sdss, out, n=2, n_bins=1, pool=2)
    name = dr16.spec_lite_name(266, 51602, 1)
    local = out / "spectra" / name
    server_path = urlsplit(dr16.spec_lite_url(rows[0]["run2d"], 266, 51602, 1, sdss.base + SAS_PATH)).path
    # local corruption: re-downloaded once, then it matches the manifest again
    data = bytearray(local.read_bytes())
    data[-100] ^= 0xFF
    local.write_bytes(bytes(data))
    logs: list[str] = []
    before = len(sdss.hits)
    summary = fetch(sdss, out, n=2, n_bins=1, pool=2, log=logs.append)
    assert summary["downloads"]["redownloaded"] == 1 and summary["downloads"]["verified"] == 1
    assert sdss.paths(server_path)[-1:] == [server_path] and len(sdss.hits) == before + 1
    assert any("differs" in m and name in m for m in logs)
    # the server's file changed too: still different after one fresh download -> error naming the file
    sdss.files[server_path] = make_spec_lite(266, 51602, 1, 0.3)
    local.write_bytes(bytes(data))
    with pytest.raises(InputError) as err:
        fetch(sdss, out, n=2, n_bins=1, pool=2)
    assert err.value.file == str(local) and err.value.field == "sha256"
    assert "after a fresh download" in err.value.problem and "manifest.json" in err.value.fix


@needs_ppxf
def test_present_file_without_manifest_entry_is_validated(sdss, tmp_path):
    rows = pool_rows(1)
    serve_pool(sdss, rows)
    spectra = tmp_path / "dr16" / "spectra"
    spectra.mkdir(parents=True)
    (spectra / "spec-0266-51602-0001.fits").write_bytes(make_spec_lite(266, 51602, 1, rows[0]["z"]))
    summary = fetch(sdss, tmp_path / "dr16", n=1, n_bins=1, pool=1)
    assert summary["downloads"]["adopted"] == 1 and sdss.paths(SAS_PATH) == []
    (spectra / "manifest.json").unlink()
    (spectra / "spec-0266-51602-0001.fits").write_bytes(b"garbage")
    with pytest.raises(InputError, match="corrupt") as err:
        fetch(sdss, tmp_path / "dr16", n=1, n_bins=1, pool=1)
    assert err.value.file.endswith("spec-0266-51602-0001.fits")


@needs_ppxf
def test_corrupt_download_names_the_file(sdss, tmp_path):
    rows = pool_rows(1)
    serve_pool(sdss, rows)
    path = urlsplit(dr16.spec_lite_url(rows[0]["run2d"], 266, 51602, 1, sdss.base + SAS_PATH)).path
    sdss.files[path] = sdss.body(path)[:50000]  # the server hands out a truncated file
    with pytest.raises(InputError) as err:
        fetch(sdss, tmp_path / "dr16", n=1, n_bins=1, pool=1)
    assert err.value.file.endswith("spec-0266-51602-0001.fits") and "delete" in err.value.fix


@needs_ppxf
def test_missing_file_on_server_is_reported(sdss, tmp_path):
    rows = pool_rows(3)
    serve_pool(sdss, rows)
    gone = urlsplit(dr16.spec_lite_url(rows[1]["run2d"], rows[1]["plate"], rows[1]["mjd"], rows[1]["fiberID"],
                                       sdss.base + SAS_PATH)).path
    del sdss.lazy[gone]
    summary = fetch(sdss, tmp_path / "dr16", n=3, n_bins=1, pool=3)
    assert summary["missing"] == [Path(gone).name] and summary["build"]["n_galaxies"] == 2
    assert summary["build"]["missing_spectra"] == [Path(gone).name]


def test_offline_error_message(tmp_path):
    port = closed_port()
    with pytest.raises(InputError) as err:
        dr16.fetch_and_build(cache=tmp_path / "dr16", out=tmp_path / "source", n=2, n_bins=1, seed=0, pool=2,
                             loglam=GRID, client=client(retries=1), skyserver_url=f"http://127.0.0.1:{port}{SQL_PATH}",
                             sas_url=f"http://127.0.0.1:{port}{SAS_PATH}", progress=False, log=lambda m: None)
    msg = str(err.value)
    assert f"cannot reach 127.0.0.1:{port}" in msg and "Connection refused" in msg
    assert "run `specllm data fetch-dr16` on a machine with network access" in msg
    assert "copy data/external/dr16 here" in msg and "PROFILE=small" in msg
    assert not (tmp_path / "dr16" / "query.csv").exists() and not (tmp_path / "source").exists()


def test_cli_offline_exit_status(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dr16, "BACKOFF", 0.01)
    monkeypatch.setattr(dr16, "RETRIES", 1)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    port = closed_port()
    rc = cli.main(["data", "fetch-dr16", "--n", "4", "--bins", "2", "--out", str(tmp_path / "dr16"),
                   "--min-interval", "0", "--skyserver-url", f"http://127.0.0.1:{port}/x", "--sas-url", f"http://127.0.0.1:{port}/sas"])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"error: http://127.0.0.1:{port}/x: network: cannot reach 127.0.0.1:{port}" in err and "PROFILE=small" in err


@needs_ppxf
def test_build_raw_like_without_catalogue(tmp_path):
    spectra = tmp_path / "spectra"
    spectra.mkdir()
    for fiber, z in ((5, 0.1), (2, 0.2)):
        (spectra / dr16.spec_lite_name(300, 51000, fiber)).write_bytes(make_spec_lite(300, 51000, fiber, z))
    manifest = dr16.build_raw_like(spectra, tmp_path / "raw", GRID)
    gal = pd.read_csv(tmp_path / "raw" / "galaxies.csv")
    assert gal["gal_id"].tolist() == [300_51000_0002, 300_51000_0005]  # plate, mjd, fiber; sorted by file name
    assert gal["z"].tolist() == pytest.approx([0.2, 0.1]) and gal["mag_r"].isna().all() and gal["flux_u"].isna().all()
    assert gal["ra"].notna().all()  # from SPECOBJ PLUG_RA when no catalogue
    assert manifest["missing_spectra"] == [] and manifest["spectra_checksums_sha256"] is None
    # a failed rebuild leaves the earlier output intact
    before = (tmp_path / "raw" / "spectra_flux.npy").read_bytes()
    (spectra / dr16.spec_lite_name(300, 51000, 9)).write_bytes(b"junk")
    with pytest.raises(InputError):
        dr16.build_raw_like(spectra, tmp_path / "raw", GRID)
    assert (tmp_path / "raw" / "spectra_flux.npy").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "spectra"]


@needs_ppxf
def test_cli_fetch_fills_the_cache(sdss, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    serve_pool(sdss, pool_rows())
    cache = tmp_path / "dr16"
    args = ["data", "fetch-dr16", "--n", "4", "--bins", "2", "--pool", "40", "--seed", "5", "--out", str(cache),
            "--min-interval", "0", "--skyserver-url", sdss.base + SQL_PATH, "--sas-url", sdss.base + SAS_PATH]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "4 galaxies in 2 redshift bins from a pool of 40; 4 downloaded, 0 already present" in out
    assert len(list((cache / "spectra").glob("spec-*.fits"))) == 4 and not (cache / "raw").exists()
    # the stage with the same n/bins/seed/pool finds everything in the cache: no request at all
    before = len(sdss.hits)
    summary = fetch(sdss, cache, n=4, n_bins=2, seed=5, pool=40)
    assert len(sdss.hits) == before and summary["downloads"]["verified"] == 4


@needs_ppxf
def test_connection_that_keeps_dropping_is_an_error(sdss, tmp_path):
    rows = pool_rows(1)
    sdss.add_spectra(rows)
    url = dr16.spec_lite_url(rows[0]["run2d"], 266, 51602, 1, sdss.base + SAS_PATH)
    path = urlsplit(url).path
    sdss.range_support = False  # every try starts again from byte 0 and is cut at 20 kB
    c = client(retries=2)
    real_get = c.get

    def get_and_rearm(*args, **kwargs):
        sdss.drop_once[path] = 20000
        return real_get(*args, **kwargs)

    c.get = get_and_rearm
    dest = tmp_path / "spec-0266-51602-0001.fits"
    with pytest.raises(InputError) as err:
        dr16.download_file(c, url, dest)
    assert err.value.field == "download" and "incomplete after 3 attempts: connection dropped" in err.value.problem
    assert "resumes spec-0266-51602-0001.fits.part" in err.value.fix and not dest.exists()
