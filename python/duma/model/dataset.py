"""Dataset helpers for templates (Rafiki's ``utils.dataset``), for Rafiki's dataset formats:

* image classification: a zip with ``images.csv`` (columns ``path,class``) and the image files;
* POS tagging: a zip with ``corpus.tsv`` (column ``token`` plus one integer column per tag,
  sentences separated by a row whose token is ``split_by``);
* tabular: a CSV file with a header row (train args ``features`` and ``target`` pick columns).

Zips are read in memory, never extracted, so entry names cannot escape a directory. Images need
Pillow, which is imported only when an image helper runs.
"""

from __future__ import annotations

import csv
import io
import math
import posixpath
import random
import zipfile
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np


class InvalidDatasetFormatException(Exception):
    """A dataset file that does not follow its task's format; the message says what is wrong."""


InvalidDatasetError = InvalidDatasetFormatException

# Cells that mean "no value", as the Rust tabular reader recognises them (any case).
MISSING_MARKERS = ("", "na", "n/a", "nan", "null")


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(
            "this dataset helper needs Pillow to decode images: add Pillow to the model's "
            'dependencies (e.g. {"Pillow": ""}) or `pip install Pillow`'
        ) from None
    return Image


class ModelDataset:
    """A dataset of ``size`` samples, indexable."""

    def __init__(self, dataset_path):
        self.path = dataset_path
        self.size = 0

    def __getitem__(self, index):
        raise NotImplementedError()

    def __len__(self):
        return self.size

    def __iter__(self):
        for i in range(self.size):
            yield self[i]


def _open_zip(dataset_path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(dataset_path, "r")
    except (zipfile.BadZipFile, OSError) as e:
        raise InvalidDatasetFormatException(f"`{dataset_path}` is not a readable zip file: {e}") from None


def _find_member(names: Sequence[str], wanted: str, suffix: str) -> str:
    """``wanted`` at the zip root, else in a single top folder, else the only ``*suffix`` file."""
    files = [n for n in names if not n.endswith("/")]
    if wanted in files:
        return wanted
    nested = [n for n in files if posixpath.basename(n) == wanted and "__MACOSX" not in n]
    if len(nested) == 1:
        return nested[0]
    candidates = [n for n in files if n.lower().endswith(suffix) and "__MACOSX" not in n]
    if len(candidates) == 1:
        return candidates[0]
    raise InvalidDatasetFormatException(f"the zip has no `{wanted}` at its root")


class CorpusDataset(ModelDataset):
    """A ``POS_TAGGING`` corpus. Each sample is a sentence ``[[token, tag_1, ..., tag_k], ...]``
    with tags as integers in ``tags`` order; ``tag_num_classes[i]`` is the number of classes of
    tag i, ``max_token_len`` and ``max_sent_len`` the longest token and sentence."""

    def __init__(self, dataset_path, tags: List[str], split_by: str):
        super().__init__(dataset_path)
        self.tags = list(tags)
        (self.size, self.tag_num_classes, self.max_token_len, self.max_sent_len, self._sents) = self._load(
            dataset_path, self.tags, split_by
        )

    def __getitem__(self, index):
        return self._sents[index]

    @staticmethod
    def _load(dataset_path, tags, split_by):
        with _open_zip(dataset_path) as zf:
            member = _find_member(zf.namelist(), "corpus.tsv", ".tsv")
            text = zf.read(member).decode("utf-8-sig")
        reader = csv.DictReader(io.StringIO(text), dialect="excel-tab")
        header = reader.fieldnames or []
        absent = [c for c in ["token", *tags] if c not in header]
        if absent:
            raise InvalidDatasetFormatException(
                f"corpus.tsv lacks column(s) {', '.join(absent)}; its header is {header}"
            )
        sents, sent = [], []
        tag_num_classes = [0] * len(tags)
        max_token_len = 0
        for line, row in enumerate(reader, start=2):
            token = row["token"]
            if token == split_by:
                sents.append(sent)
                sent = []
                continue
            try:
                token_tags = [int(row[t]) for t in tags]
            except (TypeError, ValueError):
                raise InvalidDatasetFormatException(
                    f"corpus.tsv line {line}: tags {[row.get(t) for t in tags]} should be integers"
                ) from None
            if any(t < 0 for t in token_tags):
                raise InvalidDatasetFormatException(f"corpus.tsv line {line}: tags should not be negative")
            sent.append([token, *token_tags])
            tag_num_classes = [max(t + 1, m) for t, m in zip(token_tags, tag_num_classes)]
            max_token_len = max(len(token), max_token_len)
        if sent:
            sents.append(sent)
        max_sent_len = max((len(s) for s in sents), default=0)
        return len(sents), tag_num_classes, max_token_len, max_sent_len, sents


class ImageFilesDataset(ModelDataset):
    """An ``IMAGE_CLASSIFICATION`` dataset. Each sample is ``(image, class)``: the image a
    ``image_size x image_size x channels`` uint8 array, the class an integer in ``[0, classes)``."""

    def __init__(self, dataset_path, min_image_size=None, max_image_size=None, mode="RGB", if_shuffle=False):
        super().__init__(dataset_path)
        pil_images, classes = self._load(dataset_path, mode)
        self._image_classes = list(classes)
        self.size = len(pil_images)
        self.classes = len(set(self._image_classes))
        self._images, self.image_size = self._preprocess(pil_images, min_image_size, max_image_size)
        if if_shuffle:
            order = list(range(self.size))
            random.shuffle(order)
            self._images = [self._images[i] for i in order]
            self._image_classes = [self._image_classes[i] for i in order]

    def __getitem__(self, index):
        return self._images[index], self._image_classes[index]

    @staticmethod
    def _preprocess(pil_images, min_image_size, max_image_size):
        if not pil_images:
            raise InvalidDatasetFormatException("the dataset should contain at least 1 image")
        # Square images, between the min and max sizes, stretching the first image as little as possible.
        width, height = pil_images[0].size
        image_size = max(min(width, height, max_image_size or width), min_image_size or 0)
        images = [np.asarray(x.resize((image_size, image_size))) for x in pil_images]
        return images, image_size

    @staticmethod
    def _load(dataset_path, mode):
        Image = _pil()
        with _open_zip(dataset_path) as zf:
            names = zf.namelist()
            csv_member = _find_member(names, "images.csv", ".csv")
            base = posixpath.dirname(csv_member)
            rows = _read_csv_rows(zf.read(csv_member).decode("utf-8-sig"), "images.csv", ["path", "class"])
            present = set(names)
            pil_images, classes = [], []
            for line, row in rows:
                path = row["path"].strip().replace("\\", "/")
                try:
                    image_class = int(row["class"])
                except ValueError:
                    raise InvalidDatasetFormatException(
                        f"images.csv line {line}: class {row['class']!r} should be an integer"
                    ) from None
                member = next((p for p in (posixpath.join(base, path), path) if p in present), None)
                if member is None:
                    raise InvalidDatasetFormatException(f"images.csv line {line}: `{path}` is not in the zip")
                try:
                    image = Image.open(io.BytesIO(zf.read(member)))
                    pil_images.append(image.convert(mode))
                except Exception as e:
                    raise InvalidDatasetFormatException(f"images.csv line {line}: cannot read image `{path}`: {e}") from None
                classes.append(image_class)
        return pil_images, classes


def _read_csv_rows(text: str, what: str, required: List[str]):
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    absent = [c for c in required if c not in header]
    if absent:
        raise InvalidDatasetFormatException(f"{what} lacks column(s) {', '.join(absent)}; its header is {header}")
    return [(line, row) for line, row in enumerate(reader, start=2)]


class TabularDataset(ModelDataset):
    """A CSV file with a header row, held as text cells. Sample i is row i as ``{column: text}``.

    :meth:`features_and_target` turns it into numeric arrays the way the train args
    ``features`` (default: every column but the target) and ``target`` pick columns.
    """

    def __init__(self, dataset_path):
        super().__init__(dataset_path)
        with open(dataset_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            try:
                header = next(reader)
            except StopIteration:
                raise InvalidDatasetFormatException(
                    "the CSV file is empty: a tabular dataset needs a header row naming its columns"
                ) from None
            self.columns = [h.strip() for h in header]
            duplicates = sorted({c for c in self.columns if self.columns.count(c) > 1})
            if duplicates:
                raise InvalidDatasetFormatException(f"the CSV header names column(s) {duplicates} more than once")
            self.rows: List[List[str]] = []
            for row in reader:
                if not row:
                    continue
                if len(row) != len(self.columns):
                    raise InvalidDatasetFormatException(
                        f"CSV line {reader.line_num} has {len(row)} fields; the header has {len(self.columns)}"
                    )
                self.rows.append([cell.strip() for cell in row])
        self.size = len(self.rows)

    def __getitem__(self, index):
        return dict(zip(self.columns, self.rows[index]))

    def column(self, name: str) -> List[str]:
        """The text cells of column ``name``."""
        if name not in self.columns:
            raise InvalidDatasetFormatException(f"column `{name}` is not in the CSV header {self.columns}")
        i = self.columns.index(name)
        return [row[i] for row in self.rows]

    def numeric_column(self, name: str) -> np.ndarray:
        """Column ``name`` as float64, missing cells as NaN; fails naming the first non-number."""
        return _to_floats(self.column(name), f"column `{name}`")

    def features_and_target(self, features: Optional[List[str]] = None, target: Optional[str] = None):
        """``(X, y)``: X a float64 array (rows x features, missing cells NaN); y the target
        column as float64 when every cell is a number, else as a str array (class labels), or
        ``None`` without a target. ``features`` defaults to every column but ``target``."""
        if target is not None and target not in self.columns:
            raise InvalidDatasetFormatException(f"target column `{target}` is not in the CSV header {self.columns}")
        if features is None:
            features = [c for c in self.columns if c != target]
        for name in features:
            if name not in self.columns:
                raise InvalidDatasetFormatException(f"feature column `{name}` is not in the CSV header {self.columns}")
        X = np.stack([self.numeric_column(f) for f in features], axis=1) if features else np.zeros((self.size, 0))
        y = None
        if target is not None:
            cells = self.column(target)
            try:
                y = _to_floats(cells, f"target column `{target}`")
            except InvalidDatasetFormatException:
                y = np.asarray(cells, dtype=str)
        return X, y


def _is_missing(cell) -> bool:
    return cell is None or (isinstance(cell, str) and cell.strip().lower() in MISSING_MARKERS)


def _to_floats(cells, what: str) -> np.ndarray:
    out = np.empty(len(cells), dtype=np.float64)
    for i, cell in enumerate(cells):
        if _is_missing(cell):
            out[i] = math.nan
            continue
        try:
            out[i] = float(cell)
        except (TypeError, ValueError):
            raise InvalidDatasetFormatException(f"{what}: row {i + 1} holds {cell!r}, not a number") from None
    return out


class DatasetUtils:
    """The dataset helpers. Use the shared instance: ``from duma.model import dataset`` (Rafiki:
    ``utils.dataset``)."""

    InvalidDatasetFormatException = InvalidDatasetFormatException

    def load_dataset_of_corpus(self, dataset_path, tags=None, split_by="\\n") -> CorpusDataset:
        """Loads a ``POS_TAGGING`` corpus zip. ``split_by`` is the token that ends a sentence:
        by default the two characters backslash and ``n``, as Rafiki's corpora write it."""
        return CorpusDataset(dataset_path, tags or ["tag"], split_by)

    def load_dataset_of_image_files(
        self, dataset_path, min_image_size=None, max_image_size=None, mode="RGB", if_shuffle=False
    ) -> ImageFilesDataset:
        """Loads an ``IMAGE_CLASSIFICATION`` zip; images are resized to one square size within
        ``[min_image_size, max_image_size]`` and converted to the Pillow ``mode``."""
        return ImageFilesDataset(dataset_path, min_image_size, max_image_size, mode, if_shuffle)

    def load_dataset_of_tabular(self, dataset_path) -> TabularDataset:
        """Loads a tabular CSV file (header row, then one row per sample)."""
        return TabularDataset(dataset_path)

    def load_tabular_features_and_target(self, dataset_path, features=None, target=None):
        """``(X, y)`` of a tabular CSV file, see :meth:`TabularDataset.features_and_target`."""
        return TabularDataset(dataset_path).features_and_target(features, target)

    def tabular_queries_to_array(self, queries: List[Mapping[str, Any]], features: List[str]) -> np.ndarray:
        """Tabular queries (``{feature: value}``, as the predictor receives them) as a float64
        array in ``features`` order; absent or missing values are NaN."""
        X = np.empty((len(queries), len(features)), dtype=np.float64)
        for i, query in enumerate(queries):
            if not isinstance(query, Mapping):
                raise ValueError(f"query {i} should be an object of feature values, not {type(query).__name__}")
            for j, name in enumerate(features):
                value = query.get(name)
                if _is_missing(value):
                    X[i, j] = math.nan
                elif isinstance(value, bool):
                    X[i, j] = float(value)
                else:
                    try:
                        X[i, j] = float(value)
                    except (TypeError, ValueError):
                        raise ValueError(f"query {i}: feature `{name}` is {value!r}, not a number") from None
        return X

    def normalize_images(self, images, mean=None, std=None):
        """Scales images to ``[0, 1]`` and standardises each channel: with the given ``mean`` and
        ``std`` (per channel), or with those of ``images``. Returns ``(images, mean, std)``."""
        if len(images) == 0:
            return images, mean, std
        images = np.asarray(images) / 255
        if mean is None:
            mean = np.mean(images, axis=(0, 1, 2)).tolist()
        if std is None:
            std = np.std(images, axis=(0, 1, 2)).tolist()
        safe_std = np.where(np.asarray(std, dtype=np.float64) == 0, 1.0, std)
        return (images - np.asarray(mean)) / safe_std, mean, std

    def transform_images(self, images, image_size=None, mode=None) -> np.ndarray:
        """Resizes (to ``image_size`` square) and/or converts (to Pillow ``mode``) N images given
        as an array-like (N x H x W [x C]); returns them as one numpy array."""
        Image = _pil()
        pil_images = [Image.fromarray(np.asarray(x, dtype=np.uint8)) for x in images]
        if image_size is not None:
            pil_images = [x.resize((image_size, image_size)) for x in pil_images]
        if mode is not None:
            pil_images = [x.convert(mode) for x in pil_images]
        return np.asarray([np.asarray(x) for x in pil_images])

    def load_images(self, image_paths: List[str], mode: str = "RGB") -> np.ndarray:
        """Images from files (all of the same size) as one N x H x W x C array."""
        Image = _pil()
        out = []
        for path in image_paths:
            with open(path, "rb") as f:
                out.append(np.asarray(Image.open(io.BytesIO(f.read())).convert(mode)))
        return np.asarray(out)

    def load_images_from_bytes(self, image_bytes: List[bytes], mode: str = "RGB") -> np.ndarray:
        """Encoded images (PNG, JPEG, ...) of the same size as one N x H x W x C array."""
        Image = _pil()
        return np.asarray([np.asarray(Image.open(io.BytesIO(b)).convert(mode)) for b in image_bytes])
