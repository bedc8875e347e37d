//! The train and validation datasets joined, for a final train on both (budget `FINAL_TRAIN`:
//! `TRAIN_VAL`): CSV files with the same header, the validation rows after the train rows.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The joined file, made next to `train` on first use (one per pair of cached datasets, named
/// after both) and reused after.
pub fn joined(train: &Path, val: &Path) -> Result<PathBuf, String> {
    let name = |path: &Path| {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let out = train.with_file_name(format!("{}+{}.csv", name(train), name(val)));
    if out.exists() {
        return Ok(out);
    }
    // Written aside, then renamed: another slot joining the same pair never sees half a file.
    let partial = out.with_extension(format!("partial-{}", std::process::id()));
    let result = write_joined(train, val, &partial).and_then(|()| {
        std::fs::rename(&partial, &out).map_err(|e| format!("keeping the joined file: {e}"))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result.map(|()| out)
}

fn write_joined(train: &Path, val: &Path, out: &Path) -> Result<(), String> {
    let open = |path: &Path, what: &str| {
        File::open(path)
            .map(BufReader::new)
            .map_err(|e| format!("the {what} dataset: {e}"))
    };
    let (mut train_rows, mut val_rows) = (open(train, "train")?, open(val, "validation")?);
    let (mut header, mut val_header) = (String::new(), String::new());
    let io = |e: std::io::Error| format!("joining the datasets: {e}");
    train_rows.read_line(&mut header).map_err(io)?;
    val_rows.read_line(&mut val_header).map_err(io)?;
    if header.trim_end() != val_header.trim_end() {
        return Err(format!(
            "the train and validation datasets have different CSV headers (`{}` and `{}`)",
            header.trim_end(),
            val_header.trim_end()
        ));
    }
    let mut writer = BufWriter::new(File::create(out).map_err(io)?);
    writer.write_all(header.as_bytes()).map_err(io)?;
    if !header.ends_with('\n') {
        writer.write_all(b"\n").map_err(io)?;
    }
    let mut last = b'\n';
    for rows in [&mut train_rows as &mut dyn Read, &mut val_rows] {
        if last != b'\n' {
            writer.write_all(b"\n").map_err(io)?;
        }
        let mut buffer = [0u8; 64 << 10];
        loop {
            let n = rows.read(&mut buffer).map_err(io)?;
            if n == 0 {
                break;
            }
            writer.write_all(&buffer[..n]).map_err(io)?;
            last = buffer[n - 1];
        }
    }
    writer.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn rows_of_both_follow_one_header_and_a_header_mismatch_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (train, val) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&train, "x,y\n1,2\n3,4").unwrap();
        std::fs::write(&val, "x,y\n5,6\n").unwrap();
        let out = joined(&train, &val).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "x,y\n1,2\n3,4\n5,6\n"
        );
        // Reused, not rewritten.
        assert_eq!(joined(&train, &val).unwrap(), out);

        let other = dir.path().join("c");
        std::fs::write(&other, "x,z\n7,8\n").unwrap();
        let error = joined(&train, &other).unwrap_err();
        assert!(error.contains("different CSV headers"), "{error}");
        assert!(!dir.path().join("a+c.csv").exists());
    }
}
