"""Real SDSS DR16 galaxy spectra for the paper profile: query, sample, download, resample.

Steps 1-3 fill the resumable download cache (default data/external/dr16); `specllm data
fetch-dr16 [--n N] [--bins K] [--out CACHE]` runs them on a machine with network access:

1. ``query.sql`` / ``query.csv``: a SkyServer SQL search (DR16 ``SpecObj`` joined to ``PhotoObj``)
   for galaxies with zWarning = 0, z_min < z < z_max and dereddened i (modelMag_i - extinction_i)
   < i_max, the first ``pool`` rows by specObjID. The answer is kept verbatim; a rerun with the
   same SQL reuses it without asking the server.
2. ``sample.csv``: N galaxies drawn (seeded) from K equal-frequency redshift bins of the pool
   (specllm.data.binning: edges = numpy quantiles of z), N // K per bin (the first N % K bins take one more).
3. ``spectra/spec-PPPP-MMMMM-FFFF.fits``: the spec-lite files from the SAS, with
   ``spectra/manifest.json`` recording the sha256 of every file at its first download. Downloads
   are rate-limited (a minimum interval between requests), retried with exponential backoff on
   connection errors, HTTP 429 and 5xx (honouring Retry-After), written to ``.part`` files that an
   interrupted run resumes with an HTTP Range request, and validated as FITS. A later run verifies
   every file against the manifest and downloads nothing that is present and verified; a file
   whose sha256 differs is downloaded once more and, if it still differs, is an error.

Step 4, ``build_raw_like``, resamples the spectra onto the embedded source's log-lambda grid and
writes data/raw's galaxy files (``galaxies.csv``, ``loglam.npy``, ``spectra_flux.npy``,
``spectra_ivar.npy``, ``manifest.json``) to data/dr16, so the paper profile's prepare stage reads
DR16 exactly as it reads data/raw. ``fetch_and_build`` (the fetch_dr16 stage) runs all four; with
a complete cache it sends no request.

Every URL is a function argument defaulting to the real SDSS service, so tests point them at a
loopback server. Without network access every entry point fails with one InputError saying which
host it cannot reach and how to proceed.
"""

from __future__ import annotations

import io
import json
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import requests

from specllm import paths
from specllm.data.binning import assign_bins, equal_frequency_edges
from specllm.data.galaxies import loglam_grid  # noqa: F401  (the one grid; data/raw is built on it)
from specllm.errors import InputError
from specllm.io import atomic_dir, sha256_file, write_json

SKYSERVER_SQL_URL = "https://skyserver.sdss.org/dr16/SkyServerWS/SearchTools/SqlSearch"
SAS_URL = "https://data.sdss.org/sas/dr16"
# SDSS-I/II (legacy) reductions live under sas/dr16/sdss; BOSS/eBOSS (run2d v5_13_0) under sas/dr16/eboss.
LEGACY_RUN2D = frozenset({"26", "103", "104"})
USER_AGENT = "specllm/0.1 (reproducible-paper artifact; SDSS DR16 spec-lite fetcher)"
OFFLINE_FIX = ("run `specllm data fetch-dr16` on a machine with network access and copy data/external/dr16 here, "
               "or use PROFILE=small")
BANDS = ("u", "g", "r", "i", "z")
QUERY_COLUMNS = (
    "specObjID", "plate", "mjd", "fiberID", "run2d", "z", "zErr", "ra", "dec",
    *(f"modelMag_{b}" for b in BANDS), *(f"modelFlux_{b}" for b in BANDS),
    *(f"modelFluxIvar_{b}" for b in BANDS), *(f"extinction_{b}" for b in BANDS),
)
REQUIRED_QUERY_COLUMNS = ("plate", "mjd", "fiberID", "run2d", "z", "ra", "dec")
# galaxies.csv: data/raw's columns first (stages/build_raw.py), then DR16's own.
GALAXY_COLUMNS = (
    "gal_id", "ra", "dec", "z", *(f"flux_{b}" for b in BANDS), *(f"ivar_{b}" for b in BANDS),
    *(f"extinction_{b}" for b in BANDS), *(f"mag_{b}" for b in BANDS), "i_dered",
    "z_err", "plate", "mjd", "fiber", "run2d", "spec_obj_id", "z_bin",
)
SPEC_NAME = re.compile(r"^spec-(\d{4,})-(\d{5})-(\d{4})\.fits$")
CHECKSUMS = "manifest.json"
RETRIES = 4      # retries after the first try (connection errors, HTTP 429/5xx, dropped downloads)
BACKOFF = 2.0    # seconds before the first retry, doubling each time (capped at max_backoff)


# --------------------------------------------------------------------------------------- query




def galaxy_query(top: int, z_min: float = 0.0, z_max: float = 0.5, i_max: float = 18.0) -> str:
    """The DR16 SkyServer SQL for the paper's galaxy sample (first `top` rows by specObjID).

    Photometry comes from PhotoObj (the spectrum's bestObjID): model magnitudes, model fluxes and
    their inverse variances (nanomaggies) and the SFD extinction, as data/raw's galaxies.csv has.
    """
    if int(top) < 1:
        raise ValueError("top must be >= 1")
    cols = ", ".join([f"s.{c}" for c in QUERY_COLUMNS[:9]] + [f"p.{c}" for c in QUERY_COLUMNS[9:]])
    return (
        f"SELECT TOP {int(top)} {cols}\n"
        "FROM SpecObj AS s\n"
        "JOIN PhotoObj AS p ON p.objID = s.bestObjID\n"
        "WHERE s.class = 'GALAXY' AND s.zWarning = 0\n"
        f"  AND s.z > {float(z_min)!r} AND s.z < {float(z_max)!r}\n"
        f"  AND p.modelMag_i - p.extinction_i < {float(i_max)!r}\n"
        "ORDER BY s.specObjID"
    )


def parse_skyserver_csv(text: str, source: str | Path = "SkyServer") -> pd.DataFrame:
    """Parse SkyServer's CSV answer: a '#Table1' line, a header, rows. Errors name `source`."""
    body = text.lstrip("\ufeff")
    lines = body.splitlines()
    first = next((ln.strip() for ln in lines if ln.strip()), "")
    if first != "#Table1":
        snippet = " ".join(body.split())[:200] or "(empty answer)"
        raise InputError(source, "#Table1", f"not a SkyServer CSV table; the answer begins: {snippet!r}",
                         "check the SQL (SkyServer reports SQL errors this way) and the SkyServer URL")
    start = lines.index(next(ln for ln in lines if ln.strip())) + 1
    table: list[str] = []
    for ln in lines[start:]:
        if ln.startswith("#Table"):
            break  # a second result table: only the first is ours
        table.append(ln)
    if not any(ln.strip() for ln in table):
        raise InputError(source, "header", "SkyServer table has no header line", "rerun the query")
    try:
        df = pd.read_csv(io.StringIO("\n".join(table)), dtype={"run2d": str, "specObjID": str})
    except (pd.errors.ParserError, ValueError) as err:
        raise InputError(source, "-", f"malformed SkyServer CSV ({err})", "rerun the query") from None
    df.columns = [c.strip() for c in df.columns]
    for col in REQUIRED_QUERY_COLUMNS:
        if col not in df.columns:
            raise InputError(source, col, f"column missing from the SkyServer answer (got {', '.join(df.columns)})",
                             "use galaxy_query() or select plate, mjd, fiberID, run2d, z, ra, dec")
    if df.empty:
        raise InputError(source, "rows", "SkyServer returned no rows",
                         "relax the cuts (raw.z_min, raw.z_max, raw.i_max)")
    for col in ("plate", "mjd", "fiberID"):
        values = pd.to_numeric(df[col], errors="coerce")
        if values.isna().any() or (values != values.round()).any():
            raise InputError(source, col, "non-integer value in the SkyServer answer", "rerun the query")
        df[col] = values.astype(np.int64)
    for col in ("z", "ra", "dec"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
        if df[col].isna().any():
            raise InputError(source, col, "non-numeric value in the SkyServer answer", "rerun the query")
    df["run2d"] = df["run2d"].astype(str).str.strip()
    return df


# ------------------------------------------------------------------------------------ sampling


def select_equal_frequency(pool: pd.DataFrame, n: int, n_bins: int, seed: int,
                           source: str | Path = "query.csv") -> pd.DataFrame:
    """Draw n rows: n // n_bins from each equal-frequency z bin (the first n % n_bins bins one more).

    Deterministic for a given pool (sorted by plate, mjd, fiberID first) and seed. The result keeps
    the pool order and gets a `z_bin` column.
    """
    n, n_bins = int(n), int(n_bins)
    if n < 1 or n_bins < 1:
        raise InputError(source, "n", f"need n >= 1 and bins >= 1 (got n={n}, bins={n_bins})",
                         "pass --n and --bins >= 1")
    if n_bins > n:
        raise InputError(source, "bins", f"{n_bins} bins for {n} galaxies leave empty bins", "use --bins <= --n")
    pool = pool.sort_values(["plate", "mjd", "fiberID"], kind="mergesort").reset_index(drop=True)
    z = pool["z"].to_numpy(dtype=np.float64)
    bins = assign_bins(z, equal_frequency_edges(z, n_bins))
    rng = np.random.default_rng(int(seed))
    chosen = []
    for k in range(n_bins):
        want = n // n_bins + (1 if k < n % n_bins else 0)
        members = np.flatnonzero(bins == k)
        if len(members) < want:
            raise InputError(source, "rows", f"redshift bin {k} holds {len(members)} galaxies, {want} needed "
                             f"(pool of {len(pool)} for n={n}, bins={n_bins})", "raise --pool, or lower --n or --bins")
        chosen.append(rng.choice(members, size=want, replace=False))
    picked = np.sort(np.concatenate(chosen))
    out = pool.iloc[picked].copy()
    out["z_bin"] = bins[picked]
    return out.reset_index(drop=True)


# ---------------------------------------------------------------------------------------- HTTP


def _reason(err: BaseException) -> str:
    text = str(err)
    m = re.findall(r"\[Errno -?\d+\] [^'\")\]]+", text)
    if m:
        return m[-1].strip()
    if isinstance(err, requests.Timeout):
        return "timed out"
    return f"{type(err).__name__}: {text[:160]}"


def offline_error(url: str, err: BaseException | str) -> InputError:
    host = urlsplit(url).netloc or url
    why = err if isinstance(err, str) else _reason(err)
    return InputError(url, "network", f"cannot reach {host}: {why}", OFFLINE_FIX)


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if value.replace(".", "", 1).isdigit() else None


class HttpClient:
    """requests with a minimum interval between requests, retries with backoff, and offline errors.

    Every request (first tries and retries) starts at least `min_interval` seconds after the
    previous one; `request_times` records their monotonic start times. Connection errors, HTTP 429
    and 5xx are retried `retries` times, waiting backoff * 2**(attempt-1) seconds (capped at
    max_backoff; a Retry-After header wins, also capped); then a connection error becomes the
    InputError "cannot reach <host>" and a status the InputError "HTTP <status>".
    """

    def __init__(self, session: requests.Session | None = None, *, min_interval: float = 0.5,
                 retries: int | None = None, backoff: float | None = None, max_backoff: float = 60.0,
                 timeout: tuple[float, float] = (15.0, 120.0),
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if session is None:
            session = requests.Session()
        session.headers.setdefault("User-Agent", USER_AGENT)
        self.session = session
        self.min_interval, self.max_backoff = float(min_interval), float(max_backoff)
        self.retries = int(RETRIES if retries is None else retries)
        self.backoff = float(BACKOFF if backoff is None else backoff)
        self.timeout, self.clock, self.sleep = timeout, clock, sleep
        self.request_times: list[float] = []
        self._last: float | None = None

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        return min(self.backoff * 2 ** max(attempt - 1, 0), self.max_backoff)

    def _throttle(self) -> None:
        if self._last is not None:
            wait = self._last + self.min_interval - self.clock()
            if wait > 0:
                self.sleep(wait)
        self._last = self.clock()
        self.request_times.append(self._last)

    def get(self, url: str, *, params: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None,
            stream: bool = False) -> requests.Response:
        problem: BaseException | str = "no attempt made"
        retry_after: float | None = None
        status = 0
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(self.delay(attempt, retry_after))
            self._throttle()
            retry_after = None
            try:
                response = self.session.get(url, params=params, headers=dict(headers or {}), stream=stream,
                                            timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as err:
                problem = err
                continue
            except requests.RequestException as err:  # a malformed URL, an unsupported scheme, ...
                raise InputError(url, "URL", f"cannot send the request ({type(err).__name__}: {err})",
                                 "check --skyserver-url / --sas-url (http:// or https:// URLs)") from None
            if response.status_code == 429 or response.status_code >= 500:
                status = response.status_code
                problem = f"HTTP {status} {response.reason}"
                retry_after = _retry_after(response)
                response.close()
                continue
            return response
        if isinstance(problem, BaseException):
            raise offline_error(url, problem)
        host = urlsplit(url).netloc
        raise InputError(url, f"HTTP {status}",
                         f"{host} answered {problem} {self.retries + 1} times",
                         "the server is busy or down: rerun later (finished files are kept), or use PROFILE=small")


# ---------------------------------------------------------------------------------- downloads


class NotFound(Exception):
    """The server answered 404 for a file."""


def spec_lite_name(plate: int, mjd: int, fiber: int) -> str:
    return f"spec-{int(plate):04d}-{int(mjd):05d}-{int(fiber):04d}.fits"


def spec_lite_url(run2d: str, plate: int, mjd: int, fiber: int, sas_url: str = SAS_URL) -> str:
    """SAS URL of a DR16 spec-lite file (legacy run2d 26/103/104 under sdss/, others under eboss/)."""
    run2d = str(run2d).strip()
    survey = "sdss" if run2d in LEGACY_RUN2D else "eboss"
    return (f"{sas_url.rstrip('/')}/{survey}/spectro/redux/{run2d}/spectra/lite/"
            f"{int(plate):04d}/{spec_lite_name(plate, mjd, fiber)}")


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def download_file(client: HttpClient, url: str, dest: Path) -> int:
    """Download url to dest via dest.part, resuming a partial .part with an HTTP Range request.

    A server that ignores Range (answers 200) restarts the file; a dropped connection keeps the
    .part and resumes it (up to client.retries times). Returns the file size. Raises NotFound on 404.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    problem = "no attempt made"
    for attempt in range(client.retries + 1):
        if attempt:
            client.sleep(client.delay(attempt))
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        response = client.get(url, headers=headers, stream=True)
        with response:
            if response.status_code == 404:
                raise NotFound(url)
            total: int | None = None
            if response.status_code == 416 and offset:
                m = re.search(r"/(\d+)", response.headers.get("Content-Range", ""))
                if m and int(m.group(1)) == offset:  # the .part was already complete
                    part.replace(dest)
                    return offset
                part.unlink()
                problem = f"server refused to resume at byte {offset}"
                continue
            if response.status_code == 206 and offset:
                m = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != offset:
                    part.unlink()
                    problem = f"bad Content-Range {response.headers.get('Content-Range')!r}"
                    continue
                total = int(m.group(3)) if m.group(3) != "*" else None
                mode = "ab"
            elif response.status_code == 200:
                mode, offset = "wb", 0
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
            else:
                raise InputError(url, f"HTTP {response.status_code}",
                                 f"unexpected answer: {response.status_code} {response.reason}",
                                 "check the SAS URL; rerun later (finished files are kept)")
            try:
                with open(part, mode) as fh:
                    for chunk in response.iter_content(chunk_size=1 << 14):
                        fh.write(chunk)
            except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError, requests.Timeout) as err:
                got = part.stat().st_size if part.exists() else 0
                problem = f"connection dropped after {got} bytes ({_reason(err)})"
                continue
        size = part.stat().st_size
        if total is not None and size != total:
            problem = f"connection closed after {size} of {total} bytes"
            continue
        part.replace(dest)
        return size
    raise InputError(url, "download", f"incomplete after {client.retries + 1} attempts: {problem}",
                     f"rerun `specllm data fetch-dr16` (it resumes {part.name}); " + OFFLINE_FIX)


class ChecksumManifest:
    """spectra/manifest.json: {"files": {name: {"sha256", "bytes", "url"}}}, written atomically."""

    FORMAT = "specllm-dr16-spectra/1"

    def __init__(self, folder: Path):
        self.path = Path(folder) / CHECKSUMS
        self.files: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                files = data["files"]
                assert isinstance(files, dict) and all("sha256" in v for v in files.values())
            except (ValueError, KeyError, TypeError, AssertionError):
                raise InputError(self.path, "files", "not a valid checksum manifest",
                                 f"delete {self.path} (the files are re-verified as FITS and recorded again)") from None
            self.files = dict(files)

    def save(self) -> None:
        write_json(self.path, {"format": self.FORMAT, "algorithm": "sha256", "files": self.files})


@dataclass
class DownloadReport:
    downloaded: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    redownloaded: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.__dict__.items()}


def _rows(sample: pd.DataFrame) -> Iterable[tuple[str, int, int, int]]:
    columns = (sample["run2d"].astype(str), sample["plate"], sample["mjd"], sample["fiberID"])
    for run2d, plate, mjd, fiber in zip(*columns, strict=True):
        yield run2d, int(plate), int(mjd), int(fiber)


def download_spectra(sample: pd.DataFrame, spec_dir: Path, client: HttpClient | None = None, *,
                     sas_url: str = SAS_URL, progress: bool = True, log: Callable[[str], None] | None = None,
                     save_every: int = 25) -> DownloadReport:
    """Download (or verify) the spec-lite file of every row of sample (run2d, plate, mjd, fiberID).

    Present files are checked against spectra/manifest.json (sha256) and skipped when they match;
    present files without an entry are validated as FITS and recorded; a mismatch is downloaded once
    more and must then match. New files are validated as FITS and recorded. 404s are listed in
    report.missing (and skipped). The manifest is saved every `save_every` files and on exit.
    """
    from tqdm import tqdm

    client = client or HttpClient()
    log = log or (lambda msg: print(msg, file=sys.stderr))
    spec_dir = Path(spec_dir)
    spec_dir.mkdir(parents=True, exist_ok=True)
    manifest = ChecksumManifest(spec_dir)
    report = DownloadReport()
    rows = list(_rows(sample))
    try:
        for k, (run2d, plate, mjd, fiber) in enumerate(tqdm(rows, desc="DR16 spec-lite", unit="file",
                                                                     disable=None if progress else True)):
            name = spec_lite_name(plate, mjd, fiber)
            dest = spec_dir / name
            url = spec_lite_url(run2d, plate, mjd, fiber, sas_url)
            record = manifest.files.get(name)
            again = False
            if dest.is_file():
                sha = sha256_file(dest)
                if record is None:
                    read_spec_lite(dest)  # InputError naming the file if it is not a valid spec-lite file
                    manifest.files[name] = {"sha256": sha, "bytes": dest.stat().st_size, "url": url}
                    report.adopted.append(name)
                    continue
                if sha == record["sha256"]:
                    report.verified.append(name)
                    continue
                log(f"warning: {dest}: sha256 {sha} differs from {manifest.path} ({record['sha256']}); "
                    "downloading it again")
                dest.unlink()
                again = True
            try:
                download_file(client, url, dest)
            except NotFound:
                log(f"warning: {url}: HTTP 404 (not on the server); skipped")
                report.missing.append(name)
                continue
            read_spec_lite(dest)
            sha = sha256_file(dest)
            if record is not None and sha != record["sha256"]:
                raise InputError(dest, "sha256", f"differs from {manifest.path} after a fresh download "
                                 f"(manifest {record['sha256']}, file {sha})",
                                 f"the server's file changed or the manifest is wrong: delete {dest} and its entry "
                                 f"in {manifest.path}, then rerun `specllm data fetch-dr16`")
            manifest.files[name] = {"sha256": sha, "bytes": dest.stat().st_size, "url": url}
            (report.redownloaded if again else report.downloaded).append(name)
            if (k + 1) % save_every == 0:
                manifest.save()
    finally:
        manifest.save()
    return report


# ------------------------------------------------------------------------------------ reading


def _column(table: Any, name: str) -> np.ndarray:
    for col in table.columns.names:
        if col.lower() == name.lower():
            return np.asarray(table[col])
    raise KeyError(name)


def read_spec_lite(path: str | Path) -> dict[str, Any]:
    """Read a spec-lite file: dict(loglam, flux, ivar [float64 arrays], z, plate, mjd, fiber, ra, dec).

    Anything that is not a complete spec-lite file (truncated, not FITS, no COADD flux/loglam/ivar,
    no SPECOBJ/SPALL Z, plate/mjd/fiber disagreeing with the file name) raises InputError naming it.
    """
    from astropy.io import fits

    path = Path(path)
    fix = f"delete {path} and run `specllm data fetch-dr16` again (it downloads missing files)"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, memmap=False, lazy_load_hdus=False) as hdul:
                names = [h.name for h in hdul]
                if "COADD" not in names:
                    raise InputError(path, "COADD", f"no COADD HDU (HDUs: {', '.join(names)})", fix)
                coadd = hdul["COADD"].data
                try:
                    loglam = _column(coadd, "loglam").astype(np.float64)
                    flux = _column(coadd, "flux").astype(np.float64)
                    ivar = _column(coadd, "ivar").astype(np.float64)
                except KeyError as err:
                    raise InputError(path, f"COADD.{err.args[0]}", "column missing", fix) from None
                meta_name = next((n for n in ("SPECOBJ", "SPALL") if n in names), None)
                if meta_name is None and len(hdul) > 2:
                    meta_name = names[2]
                if meta_name is None or hdul[meta_name].data is None or len(hdul[meta_name].data) < 1:
                    raise InputError(path, "SPECOBJ", f"no SPECOBJ HDU with a row (HDUs: {', '.join(names)})", fix)
                meta = hdul[meta_name].data
                try:
                    z = float(_column(meta, "Z")[0])
                    plate, mjd, fiber = (int(_column(meta, c)[0]) for c in ("PLATE", "MJD", "FIBERID"))
                except KeyError as err:
                    raise InputError(path, f"{meta_name}.{err.args[0]}", "column missing", fix) from None
                radec = []
                for c in ("PLUG_RA", "PLUG_DEC"):
                    try:
                        radec.append(float(_column(meta, c)[0]))
                    except KeyError:
                        radec.append(float("nan"))
                for h in hdul[3:4]:
                    _ = h.data  # reading SPZLINE too makes a truncated tail fail here
    except InputError:
        raise
    except Exception as err:  # astropy raises OSError, ValueError, TypeError, ... on broken files
        raise InputError(path, "FITS", f"corrupt or truncated FITS file ({type(err).__name__}: {err})", fix) from None
    trunc = [str(w.message) for w in caught if "truncated" in str(w.message).lower()]
    if trunc:
        raise InputError(path, "FITS", f"truncated FITS file ({trunc[0]})", fix)
    if not (len(loglam) == len(flux) == len(ivar)) or len(loglam) < 2:
        raise InputError(path, "COADD", f"flux/loglam/ivar lengths {len(flux)}/{len(loglam)}/{len(ivar)}", fix)
    if not np.all(np.isfinite(loglam)) or not np.all(np.diff(loglam) > 0):
        raise InputError(path, "COADD.loglam", "not finite and increasing", fix)
    if not np.isfinite(z):
        raise InputError(path, f"{meta_name}.Z", "redshift is not finite", fix)
    m = SPEC_NAME.match(path.name)
    if m and (int(m.group(1)), int(m.group(2)), int(m.group(3))) != (plate, mjd, fiber):
        raise InputError(path, f"{meta_name}.PLATE/MJD/FIBERID",
                         f"file holds {spec_lite_name(plate, mjd, fiber)}, not what its name says", fix)
    return {"loglam": loglam, "flux": flux, "ivar": ivar, "z": z, "plate": plate, "mjd": mjd, "fiber": fiber,
            "ra": radec[0], "dec": radec[1]}


# --------------------------------------------------------------------------------- resampling


def resample_to_grid(loglam: np.ndarray, flux: np.ndarray, ivar: np.ndarray,
                     grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Put a spectrum on `grid` (uniform in log10 lambda). Grid pixels outside the spectrum get
    flux 0, ivar 0; pixels the pipeline masked (ivar 0) keep their flux with ivar 0.

    SDSS coadds sit on the same 1e-4 dex grid, so a spectrum whose pixels fall within 0.1 pixel
    of grid points is copied pixel for pixel. Otherwise flux is interpolated linearly and ivar is
    the reciprocal of the linearly interpolated variance (0 where a neighbour has ivar <= 0).
    Non-finite flux becomes 0 with ivar 0.
    """
    grid = np.asarray(grid, dtype=np.float64)
    loglam, flux, ivar = (np.asarray(a, dtype=np.float64) for a in (loglam, flux, ivar))
    good = np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0)
    flux = np.where(np.isfinite(flux), flux, 0.0)
    ivar = np.where(good, ivar, 0.0)
    out_flux = np.zeros(len(grid))
    out_ivar = np.zeros(len(grid))
    step = (grid[-1] - grid[0]) / (len(grid) - 1)
    pos = (loglam - grid[0]) / step
    k = np.rint(pos).astype(np.int64)
    if np.max(np.abs(pos - k)) < 0.1 and len(np.unique(k)) == len(k):
        inside = (k >= 0) & (k < len(grid))
        out_flux[k[inside]] = flux[inside]
        out_ivar[k[inside]] = ivar[inside]
        return out_flux, out_ivar
    inside = (grid >= loglam[0]) & (grid <= loglam[-1])
    out_flux[inside] = np.interp(grid[inside], loglam, flux)
    bad = np.interp(grid[inside], loglam, (~good).astype(np.float64)) > 0
    var = np.interp(grid[inside], loglam, np.where(good, 1.0 / np.where(good, ivar, 1.0), 0.0))
    iv = np.where(bad | (var <= 0), 0.0, 1.0 / np.where(var > 0, var, 1.0))
    out_ivar[inside] = iv
    return out_flux, out_ivar


def gal_id(plate: int, mjd: int, fiber: int) -> int:
    """Integer galaxy id PPPPPMMMMMFFFF: plate * 10**9 + mjd * 10**4 + fiber (fits int64, readable)."""
    return int(plate) * 10**9 + int(mjd) * 10**4 + int(fiber)


def _num(rec: Mapping[str, Any], key: str) -> float:
    try:
        value = float(rec.get(key, np.nan))
    except (TypeError, ValueError):
        return float("nan")
    return value


def _cells(values: Iterable[Any], spec: str) -> list[str]:
    return [spec % v for v in values]


def build_raw_like(spec_dir: str | Path, out_dir: str | Path, loglam: np.ndarray | None = None,
                   catalogue: pd.DataFrame | str | Path | None = None, *, progress: bool = False) -> dict[str, Any]:
    """Resample downloaded spectra onto `loglam` and write data/raw's galaxy files to out_dir.

    Writes (atomically; a failure leaves an earlier out_dir intact):

    * galaxies.csv: GALAXY_COLUMNS, row k <-> spectrum k. data/raw's columns with its formats
      (gal_id, ra, dec, z, flux_*/ivar_* = PhotoObj modelFlux/modelFluxIvar in nanomaggies,
      extinction_*, mag_* = 22.5 - 2.5 log10(flux) - extinction, i_dered), then z_err, plate, mjd,
      fiber, run2d, spec_obj_id, z_bin. gal_id = gal_id(plate, mjd, fiber); z is the spectrum's
      SPECOBJ Z. Unknown values are written nan (photometry without a catalogue), z_bin -1.
    * loglam.npy (float64), spectra_flux.npy and spectra_ivar.npy (float32, (n, len(loglam))).
    * manifest.json: counts, grid, per-file sha256, the checksum manifest of the spectra, missing files.

    With a catalogue (sample.csv or its DataFrame) the rows are the catalogue's rows in order,
    skipping spectra that are not present (listed as missing); without one, every spec-*.fits in
    spec_dir by name. `loglam` defaults to data/raw/loglam.npy. Returns the manifest.
    """
    from tqdm import tqdm

    spec_dir, out_dir = Path(spec_dir), Path(out_dir)
    if loglam is None:
        ref = paths.RAW / "loglam.npy"
        if not ref.is_file():
            raise InputError(ref, "loglam", "no log-lambda grid given and the embedded one is missing",
                             "run `make data` first, or pass "
                             "loglam_grid(raw.loglam_min, raw.loglam_max, raw.loglam_step)")
        loglam = np.load(ref)
    grid = np.asarray(loglam, dtype=np.float64)
    if grid.ndim != 1 or len(grid) < 2 or not np.all(np.diff(grid) > 0):
        raise InputError("loglam", "loglam", "grid must be 1-D and increasing", "pass loglam_grid(lo, hi, step)")
    if isinstance(catalogue, (str, Path)):
        catalogue = pd.read_csv(catalogue, dtype={"run2d": str, "specObjID": str})
    entries: list[tuple[Path, dict[str, Any]]] = []
    missing: list[str] = []
    if catalogue is not None:
        for rec in catalogue.to_dict("records"):
            name = spec_lite_name(rec["plate"], rec["mjd"], rec["fiberID"])
            if (spec_dir / name).is_file():
                entries.append((spec_dir / name, rec))
            else:
                missing.append(name)
    else:
        entries = [(p, {}) for p in sorted(spec_dir.glob("spec-*.fits"))]
    if not entries:
        raise InputError(spec_dir, "spec-*.fits", "no spectra to build from", "run `specllm data fetch-dr16` first")

    n = len(entries)
    flux = np.zeros((n, len(grid)), dtype=np.float32)
    ivar = np.zeros_like(flux)
    cols: dict[str, list[Any]] = {c: [] for c in ("gal_id", "ra", "dec", "z", "z_err", "plate", "mjd", "fiber",
                                                  "run2d", "spec_obj_id", "z_bin")}
    phot = {f"{kind}_{b}": np.full(n, np.nan) for kind in ("flux", "ivar", "extinction") for b in BANDS}
    for k, (path, rec) in enumerate(tqdm(entries, desc="resample", unit="spec", disable=None if progress else True)):
        spec = read_spec_lite(path)
        f, iv = resample_to_grid(spec["loglam"], spec["flux"], spec["ivar"], grid)
        flux[k], ivar[k] = f.astype(np.float32), iv.astype(np.float32)
        ra, dec = _num(rec, "ra"), _num(rec, "dec")
        cols["gal_id"].append(gal_id(spec["plate"], spec["mjd"], spec["fiber"]))
        cols["ra"].append(ra if np.isfinite(ra) else spec["ra"])
        cols["dec"].append(dec if np.isfinite(dec) else spec["dec"])
        cols["z"].append(spec["z"])
        cols["z_err"].append(_num(rec, "zErr"))
        cols["plate"].append(spec["plate"])
        cols["mjd"].append(spec["mjd"])
        cols["fiber"].append(spec["fiber"])
        cols["run2d"].append(str(rec["run2d"]).strip() if pd.notna(rec.get("run2d")) else "")
        cols["spec_obj_id"].append(str(rec["specObjID"]).strip() if pd.notna(rec.get("specObjID")) else "")
        cols["z_bin"].append(int(rec["z_bin"]) if pd.notna(rec.get("z_bin")) else -1)
        for b in BANDS:
            phot[f"flux_{b}"][k] = _num(rec, f"modelFlux_{b}")
            phot[f"ivar_{b}"][k] = _num(rec, f"modelFluxIvar_{b}")
            phot[f"extinction_{b}"][k] = _num(rec, f"extinction_{b}")
    mags = {}
    for b in BANDS:
        fl = phot[f"flux_{b}"]
        with np.errstate(divide="ignore", invalid="ignore"):
            pogson = np.where(fl > 0, 22.5 - 2.5 * np.log10(np.where(fl > 0, fl, 1.0)), np.nan)
        mags[b] = pogson - phot[f"extinction_{b}"]
    table: dict[str, list[str]] = {
        "gal_id": _cells(cols["gal_id"], "%d"), "ra": _cells(cols["ra"], "%.8f"), "dec": _cells(cols["dec"], "%.8f"),
        "z": _cells(cols["z"], "%.9g"),
        **{key: _cells(values, "%.9g") for key, values in phot.items()},
        **{f"mag_{b}": _cells(mags[b], "%.6f") for b in BANDS}, "i_dered": _cells(mags["i"], "%.6f"),
        "z_err": _cells(cols["z_err"], "%.9g"), "plate": _cells(cols["plate"], "%d"), "mjd": _cells(cols["mjd"], "%d"),
        "fiber": _cells(cols["fiber"], "%d"), "run2d": cols["run2d"], "spec_obj_id": cols["spec_obj_id"],
        "z_bin": _cells(cols["z_bin"], "%d"),
    }
    rows = zip(*(table[c] for c in GALAXY_COLUMNS), strict=True)
    lines = [",".join(GALAXY_COLUMNS)] + [",".join(row) for row in rows]
    step = float((grid[-1] - grid[0]) / (len(grid) - 1))
    checks = spec_dir / CHECKSUMS
    with atomic_dir(out_dir) as tmp:
        (tmp / "galaxies.csv").write_text("\n".join(lines) + "\n")
        np.save(tmp / "loglam.npy", grid)
        np.save(tmp / "spectra_flux.npy", flux)
        np.save(tmp / "spectra_ivar.npy", ivar)
        files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in sorted(tmp.iterdir())}
        manifest = {
            "format": "specllm-dr16-source/1",
            "source": "dr16",
            "n_galaxies": n,
            "loglam": {"min": float(grid[0]), "max": float(grid[-1]), "step": round(step, 12), "n": int(len(grid))},
            "flux_units": "1e-17 erg/s/cm^2/A (SDSS coadd), observed frame, vacuum wavelengths",
            "resampling": "pixel copy when aligned to the grid, else linear (flux) and inverse of the linearly "
                          "interpolated variance; outside a spectrum flux 0, ivar 0; masked pixels keep flux, ivar 0",
            "gal_id": "plate * 10**9 + mjd * 10**4 + fiber",
            "photometry": "PhotoObj of SpecObj.bestObjID: modelFlux, modelFluxIvar (nanomaggies), extinction (SFD); "
                          "mag = 22.5 - 2.5 log10(flux) - extinction",
            "files": files,
            "spectra_checksums_sha256": sha256_file(checks) if checks.is_file() else None,
            "missing_spectra": missing,
        }
        write_json(tmp / "manifest.json", manifest)
    return manifest


# -------------------------------------------------------------------------------------- fetch


def run_query(sql: str, client: HttpClient, url: str = SKYSERVER_SQL_URL) -> str:
    """Submit SQL to the SkyServer SqlSearch endpoint; return the CSV text (checked for '#Table1')."""
    response = client.get(url, params={"cmd": sql, "format": "csv"})
    with response:
        if response.status_code != 200:
            body = " ".join(response.text.split())[:200]
            raise InputError(url, f"HTTP {response.status_code}", f"SkyServer refused the query: {body!r}",
                             "check the SQL and the SkyServer URL")
        text = response.content.decode("utf-8", errors="replace")
    parse_skyserver_csv(text, url)
    return text


def default_pool(n: int) -> int:
    """SkyServer rows to sample from: ten times the sample, at least 1000."""
    return max(10 * int(n), 1000)


def fetch_spectra(cache: str | Path | None = None, *, n: int, n_bins: int, seed: int, pool: int | None = None,
                  z_min: float = 0.0, z_max: float = 0.5, i_max: float = 18.0,
                  skyserver_url: str = SKYSERVER_SQL_URL, sas_url: str = SAS_URL, client: HttpClient | None = None,
                  min_interval: float = 0.5, progress: bool = True,
                  log: Callable[[str], None] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Steps 1-3 into the cache (default data/external/dr16): query (reused when the SQL is unchanged),
    sample.csv, spectra/ with their checksum manifest. Returns (sample, summary)."""
    cache = Path(cache) if cache is not None else paths.DR16
    log = log or (lambda msg: print(msg, file=sys.stderr))
    client = client or HttpClient(min_interval=min_interval)
    pool = int(pool) if pool is not None else default_pool(n)
    if pool < n:
        raise InputError("--pool", "pool", f"pool of {pool} rows is smaller than n = {n}", "use --pool >= --n")
    cache.mkdir(parents=True, exist_ok=True)
    sql = galaxy_query(pool, z_min, z_max, i_max)
    sql_file, csv_file = cache / "query.sql", cache / "query.csv"
    if csv_file.is_file() and sql_file.is_file() and sql_file.read_text() == sql + "\n":
        log(f"reusing {csv_file} (same query)")
        table = parse_skyserver_csv(csv_file.read_text(), csv_file)
    else:
        log(f"querying {urlsplit(skyserver_url).netloc} for up to {pool} galaxies")
        text = run_query(sql, client, skyserver_url)
        table = parse_skyserver_csv(text, skyserver_url)
        csv_file.write_text(text)
        sql_file.write_text(sql + "\n")
    sample = select_equal_frequency(table, n, n_bins, seed, csv_file)
    sample.to_csv(cache / "sample.csv", index=False, lineterminator="\n")
    report = download_spectra(sample, cache / "spectra", client, sas_url=sas_url, progress=progress, log=log)
    summary = {"pool": len(table), "sample": len(sample), "downloads": report.counts(),
               "requests": len(client.request_times), "missing": report.missing}
    d = summary["downloads"]
    log(f"DR16: pool {len(table):,} -> sample {len(sample):,} in {n_bins} redshift bins (seed {seed}); "
        f"spectra {d['downloaded']} downloaded, {d['verified']} verified, {d['redownloaded']} re-downloaded, "
        f"{d['adopted']} adopted, {d['missing']} missing (HTTP 404); {summary['requests']} requests")
    if report.missing:
        log(f"warning: {len(report.missing)} spectra are not on the server and are left out: "
            f"{', '.join(report.missing[:5])}{' ...' if len(report.missing) > 5 else ''}")
    return sample, summary


def fetch_and_build(*, n: int, n_bins: int, seed: int, z_min: float = 0.0, z_max: float = 0.5, i_max: float = 18.0,
                    cache: str | Path | None = None, out: str | Path | None = None, loglam: np.ndarray | None = None,
                    pool: int | None = None, skyserver_url: str = SKYSERVER_SQL_URL, sas_url: str = SAS_URL,
                    client: HttpClient | None = None, min_interval: float = 0.5, progress: bool = True,
                    log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """What the fetch_dr16 stage runs: fetch_spectra into `cache` (data/external/dr16), then
    build_raw_like into `out` (data/dr16) on `loglam`. With a complete cache it needs no network and
    sends no request. Returns the fetch summary with the build manifest under "build"."""
    cache = Path(cache) if cache is not None else paths.DR16
    out = Path(out) if out is not None else paths.DR16_SOURCE
    sample, summary = fetch_spectra(cache, n=n, n_bins=n_bins, seed=seed, pool=pool, z_min=z_min, z_max=z_max,
                                    i_max=i_max, skyserver_url=skyserver_url, sas_url=sas_url, client=client,
                                    min_interval=min_interval, progress=progress, log=log)
    summary["build"] = build_raw_like(cache / "spectra", out, loglam, sample, progress=progress)
    (log or (lambda msg: print(msg, file=sys.stderr)))(
        f"wrote {out}: {summary['build']['n_galaxies']} spectra x {summary['build']['loglam']['n']} pixels")
    return summary


def fetch_cli(n: int | None = None, bins: int | None = None, out: Path | None = None, *, seed: int | None = None,
              pool: int | None = None, min_interval: float = 0.5, skyserver_url: str | None = None,
              sas_url: str | None = None) -> int:
    """`specllm data fetch-dr16`: fill the download cache (default data/external/dr16).

    Defaults are those the fetch_dr16 stage uses under the paper profile (n = n_train + n_val +
    n_test of profiles/paper.yaml, bins = data.z_bins, seed, raw.z_min/z_max/i_max), so the stage
    later finds every file present and verified and sends no request.
    """
    from specllm import config

    flat = config.load()
    if n is None:
        paper = {**flat, **config.profile_overrides("paper")}
        n = int(paper["data.n_train"]) + int(paper["data.n_val"]) + int(paper["data.n_test"])
    bins = int(bins if bins is not None else flat["data.z_bins"])
    seed = int(seed if seed is not None else flat["seed"])
    cache = Path(out) if out is not None else paths.DR16
    _, summary = fetch_spectra(cache, n=n, n_bins=bins, seed=seed, pool=pool, z_min=flat["raw.z_min"],
                               z_max=flat["raw.z_max"], i_max=flat["raw.i_max"],
                               skyserver_url=skyserver_url or SKYSERVER_SQL_URL, sas_url=sas_url or SAS_URL,
                               min_interval=min_interval, log=lambda msg: print(msg, file=sys.stderr))
    d = summary["downloads"]
    print(f"{cache}: {summary['sample']:,} galaxies in {bins} redshift bins from a pool of {summary['pool']:,}; "
          f"{d['downloaded'] + d['redownloaded']} downloaded, {d['verified'] + d['adopted']} already present, "
          f"{d['missing']} missing on the server")
    print("next: `make reproduce PROFILE=paper` (the fetch_dr16 stage builds data/dr16 from this cache)")
    return 0
