import io
import zipfile

import numpy as np
import pytest

from duma.model import dataset
from duma.model.dataset import InvalidDatasetFormatException


def make_zip(path, files):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return str(path)


# -- corpus ---------------------------------------------------------------------------------------

CORPUS = "token\ttag\tchunk\nThe\t0\t1\ncat\t1\t2\n\\n\t0\t0\nIt\t2\t1\nsat\t3\t0\nthere\t1\t0\n\\n\t0\t0\nTrailing\t4\t0\n"


def test_corpus_is_split_into_sentences_of_tokens_and_integer_tags(tmp_path):
    path = make_zip(tmp_path / "corpus.zip", {"corpus.tsv": CORPUS})
    ds = dataset.load_dataset_of_corpus(path)
    assert ds.size == len(ds) == 3
    assert ds[0] == [["The", 0], ["cat", 1]]
    assert ds[1] == [["It", 2], ["sat", 3], ["there", 1]]
    assert ds[2] == [["Trailing", 4]]
    assert ds.tag_num_classes == [5]
    assert ds.max_token_len == len("Trailing") and ds.max_sent_len == 3


def test_corpus_with_several_tags_and_custom_split(tmp_path):
    text = "token\ttag\tchunk\nA\t0\t1\n<s>\t0\t0\nB\t2\t0\n"
    path = make_zip(tmp_path / "c.zip", {"corpus.tsv": text})
    ds = dataset.load_dataset_of_corpus(path, tags=["tag", "chunk"], split_by="<s>")
    assert list(ds) == [[["A", 0, 1]], [["B", 2, 0]]]
    assert ds.tag_num_classes == [3, 2]


def test_corpus_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(InvalidDatasetFormatException, match="lacks column"):
        dataset.load_dataset_of_corpus(make_zip(tmp_path / "a.zip", {"corpus.tsv": "word\ttag\nA\t0\n"}))
    with pytest.raises(InvalidDatasetFormatException, match="line 2.*integers"):
        dataset.load_dataset_of_corpus(make_zip(tmp_path / "b.zip", {"corpus.tsv": "token\ttag\nA\tNN\n"}))
    with pytest.raises(InvalidDatasetFormatException, match="no `corpus.tsv`"):
        dataset.load_dataset_of_corpus(make_zip(tmp_path / "c.zip", {"a.txt": "", "b.txt": ""}))
    (tmp_path / "d.zip").write_bytes(b"not a zip")
    with pytest.raises(InvalidDatasetFormatException, match="not a readable zip"):
        dataset.load_dataset_of_corpus(str(tmp_path / "d.zip"))


# -- images ---------------------------------------------------------------------------------------


def png_bytes(Image, color, size):
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_image_files_are_loaded_resized_and_labelled(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    files = {
        "images.csv": "path,class\nimages/red.png,0\nimages/green.png,1\nimages/blue.png,1\n",
        "images/red.png": png_bytes(Image, (255, 0, 0), (8, 6)),
        "images/green.png": png_bytes(Image, (0, 255, 0), (4, 4)),
        "images/blue.png": png_bytes(Image, (0, 0, 255), (10, 10)),
    }
    path = make_zip(tmp_path / "images.zip", files)
    ds = dataset.load_dataset_of_image_files(path)
    assert ds.size == 3 and ds.classes == 2 and ds.image_size == 6
    image, label = ds[0]
    assert image.shape == (6, 6, 3) and image.dtype == np.uint8 and label == 0
    assert tuple(image[0, 0]) == (255, 0, 0)
    small = dataset.load_dataset_of_image_files(path, max_image_size=4, mode="L")
    assert small.image_size == 4 and small[1][0].shape == (4, 4)
    big = dataset.load_dataset_of_image_files(path, min_image_size=16)
    assert big.image_size == 16
    transformed = dataset.transform_images([ds[0][0], ds[1][0]], image_size=3, mode="L")
    assert transformed.shape == (2, 3, 3)


def test_image_dataset_errors(tmp_path):
    pytest.importorskip("PIL.Image")
    with pytest.raises(InvalidDatasetFormatException, match="not in the zip"):
        dataset.load_dataset_of_image_files(make_zip(tmp_path / "a.zip", {"images.csv": "path,class\nx.png,0\n"}))
    with pytest.raises(InvalidDatasetFormatException, match="lacks column"):
        dataset.load_dataset_of_image_files(make_zip(tmp_path / "b.zip", {"images.csv": "file,label\n"}))
    with pytest.raises(InvalidDatasetFormatException, match="at least 1 image"):
        dataset.load_dataset_of_image_files(make_zip(tmp_path / "c.zip", {"images.csv": "path,class\n"}))


def test_images_without_pillow_fail_with_a_clear_message(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pil(name, *args, **kwargs):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("No module named 'PIL'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pil)
    path = make_zip(tmp_path / "i.zip", {"images.csv": "path,class\n"})
    with pytest.raises(ImportError, match="needs Pillow"):
        dataset.load_dataset_of_image_files(path)


def test_normalize_images_by_channel():
    images = np.stack([np.full((2, 2, 3), 0), np.full((2, 2, 3), 255)]).astype(np.uint8)
    normed, mean, std = dataset.normalize_images(images)
    assert mean == pytest.approx([0.5] * 3) and std == pytest.approx([0.5] * 3)
    assert normed.min() == pytest.approx(-1) and normed.max() == pytest.approx(1)
    again, mean2, std2 = dataset.normalize_images(images[:1], mean, std)
    assert (mean2, std2) == (mean, std) and again.max() == pytest.approx(-1)
    assert dataset.normalize_images([]) == ([], None, None)


# -- tabular --------------------------------------------------------------------------------------


def test_tabular_features_and_target(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a, b ,label\n1,2.5,cat\n3,NA,dog\n,4,cat\n")
    ds = dataset.load_dataset_of_tabular(str(path))
    assert ds.columns == ["a", "b", "label"] and ds.size == 3
    assert ds[1] == {"a": "3", "b": "NA", "label": "dog"}
    X, y = ds.features_and_target(target="label")
    np.testing.assert_array_equal(X, [[1, 2.5], [3, np.nan], [np.nan, 4]])
    assert list(y) == ["cat", "dog", "cat"]
    X, y = dataset.load_tabular_features_and_target(str(path), features=["b"], target="a")
    assert X.shape == (3, 1) and np.isnan(y[2]) and y.dtype == np.float64


def test_tabular_errors_name_the_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,x\n")
    ds = dataset.load_dataset_of_tabular(str(path))
    with pytest.raises(InvalidDatasetFormatException, match="column `b`: row 1 holds 'x'"):
        ds.features_and_target(target="a")
    with pytest.raises(InvalidDatasetFormatException, match="target column `z`"):
        ds.features_and_target(target="z")
    with pytest.raises(InvalidDatasetFormatException, match="feature column `q`"):
        ds.features_and_target(features=["q"])
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(InvalidDatasetFormatException, match="empty"):
        dataset.load_dataset_of_tabular(str(tmp_path / "e.csv"))
    (tmp_path / "r.csv").write_text("a,b\n1\n")
    with pytest.raises(InvalidDatasetFormatException, match="line 2 has 1 fields"):
        dataset.load_dataset_of_tabular(str(tmp_path / "r.csv"))


def test_tabular_queries_to_array():
    X = dataset.tabular_queries_to_array([{"a": 1, "b": "2"}, {"a": None}, {"b": True, "a": "nan"}], ["a", "b"])
    np.testing.assert_array_equal(X, [[1, 2], [np.nan, np.nan], [np.nan, 1]])
    with pytest.raises(ValueError, match="query 0: feature `a`"):
        dataset.tabular_queries_to_array([{"a": "x"}], ["a"])
    with pytest.raises(ValueError, match="query 0 should be an object"):
        dataset.tabular_queries_to_array([[1, 2]], ["a"])
