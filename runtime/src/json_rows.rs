//! The common shape of a batch of tabular queries, `[[1.5, -2, 3e-4], [0, 7.25, 1]]`, read
//! straight into numbers: no serde visitor per number, and each number parsed by fast-float2
//! (Eisel-Lemire, correctly rounded like serde_json's `float_roundtrip`), about three times
//! faster than the general reader on rows of 16–17 digit floats. Anything else is left to the
//! general reader, which also words the errors.

/// Appends the numbers of `text` to `out` when it is a JSON list of equally long, non-empty
/// lists of numbers: `(rows, numbers per row)`. `None` (and `out` as it was) for any other text,
/// valid JSON or not. Each number reads exactly as serde_json reads it into an `f64`.
pub(crate) fn read_number_rows(text: &[u8], out: &mut Vec<f64>) -> Option<(usize, usize)> {
    let start = out.len();
    let read = Reader { text, at: 0 }.rows(out);
    if read.is_none() {
        out.truncate(start);
    }
    read
}

struct Reader<'a> {
    text: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn rows(mut self, out: &mut Vec<f64>) -> Option<(usize, usize)> {
        self.expect(b'[')?;
        let (mut rows, mut per_row) = (0, None);
        loop {
            let numbers = self.row(out)?;
            if *per_row.get_or_insert(numbers) != numbers {
                return None;
            }
            rows += 1;
            match self.next()? {
                b',' => {}
                b']' => break,
                _ => return None,
            }
        }
        self.skip_space();
        (self.at == self.text.len()).then_some((rows, per_row?))
    }

    /// One row, `[n, …]` with at least one number: how many.
    fn row(&mut self, out: &mut Vec<f64>) -> Option<usize> {
        self.expect(b'[')?;
        let mut numbers = 0;
        loop {
            self.skip_space();
            out.push(self.number()?);
            numbers += 1;
            match self.next()? {
                b',' => {}
                b']' => return Some(numbers),
                _ => return None,
            }
        }
    }

    /// A number as JSON writes it (`-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?`), never what
    /// fast-float2 also takes (`inf`, `.5`, `+1`, `01`).
    fn number(&mut self) -> Option<f64> {
        let start = self.at;
        self.eat(b'-');
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.eat(b'.') {
            self.some_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            self.some_digits()?;
        }
        let value: f64 = fast_float2::parse(&self.text[start..self.at]).ok()?;
        // serde_json refuses a number past f64's range.
        value.is_finite().then_some(value)
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }

    /// The next byte that is not JSON white space, consumed.
    fn next(&mut self) -> Option<u8> {
        self.skip_space();
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.at += 1;
        }
        found
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::Xoshiro256PlusPlus;
    use rand::{RngExt, SeedableRng};

    use super::read_number_rows;

    /// What the general reader makes of `text`: serde_json's numbers, row by row.
    fn by_serde(text: &str) -> Option<(usize, usize, Vec<f64>)> {
        let rows: Vec<Vec<serde_json::Number>> = serde_json::from_str(text).ok()?;
        let per_row = rows.first()?.len();
        if per_row == 0 || rows.iter().any(|r| r.len() != per_row) {
            return None;
        }
        let numbers = rows
            .iter()
            .flatten()
            .map(|n| n.as_f64())
            .collect::<Option<_>>()?;
        Some((rows.len(), per_row, numbers))
    }

    fn by_fast_path(text: &str) -> Option<(usize, usize, Vec<f64>)> {
        let mut out = vec![42.0];
        match read_number_rows(text.as_bytes(), &mut out) {
            Some((rows, per_row)) => Some((rows, per_row, out[1..].to_vec())),
            None => {
                assert_eq!(
                    out,
                    [42.0],
                    "{text}: a refusal leaves the numbers as they were"
                );
                None
            }
        }
    }

    /// Same rows, same numbers to the bit (the sign of zero included) — or refused, for the
    /// general reader to read.
    fn agrees(text: &str) {
        let fast = by_fast_path(text);
        let general = by_serde(text);
        if let Some((rows, per_row, numbers)) = &fast {
            let (g_rows, g_per_row, g_numbers) = general
                .as_ref()
                .unwrap_or_else(|| panic!("{text}: read here, but serde_json refuses it"));
            assert_eq!((rows, per_row), (g_rows, g_per_row), "{text}");
            let bits = |n: &[f64]| n.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(numbers), bits(g_numbers), "{text}");
        }
    }

    #[test]
    fn rows_of_numbers_read_as_serde_json_reads_them() {
        for text in [
            "[[1, 2.5, -3e-4]]",
            " [ [0.1 ,\t0.2] ,\n[ -0 , -0.0 ] ] \r\n",
            "[[12345678901234567890123, 1e308, 2.2250738585072014e-308, 5e-324]]",
            "[[-0.6826540231704712, 0.30000000000000004, 9007199254740993]]",
            "[[1E+2, 1e-2, 0.0e0, 123456789.123456789e-5]]",
        ] {
            assert!(by_fast_path(text).is_some(), "{text}");
            agrees(text);
        }
    }

    #[test]
    fn anything_else_is_left_to_the_general_reader() {
        for text in [
            "",
            "[]",
            "[[]]",
            "[1, 2]",
            "[[1], 2]",
            "[[1, 2], [3]]",
            "[[1,]]",
            "[[1], ]",
            "[[01]]",
            "[[.5]]",
            "[[5.]]",
            "[[+1]]",
            "[[1e]]",
            "[[1e+]]",
            "[[--1]]",
            "[[NaN]]",
            "[[inf]]",
            "[[Infinity]]",
            "[[1e400]]",
            "[[true]]",
            "[[\"1\"]]",
            "[[null]]",
            "[[[1]]]",
            "[{\"a\": 1}]",
            "[[1]] x",
            "[[1]]]",
            "[[1] [2]]",
            "[[1 2]]",
        ] {
            assert_eq!(by_fast_path(text), None, "{text}");
        }
    }

    #[test]
    fn random_rows_read_bit_for_bit_as_serde_json_reads_them() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        for _ in 0..2000 {
            let rows = rng.random_range(1..4);
            let per_row = rng.random_range(1..6);
            let text = (0..rows)
                .map(|_| {
                    let row = (0..per_row)
                        .map(|_| match rng.random_range(0..6) {
                            0 => format!(
                                "{}",
                                rng.random::<f64>() * 10f64.powi(rng.random_range(-30..30))
                            ),
                            1 => format!("{:e}", -rng.random::<f64>()),
                            2 => format!("{}", rng.random::<i64>()),
                            3 => format!("{}", f64::from_bits(rng.random::<u64>() >> 2)),
                            4 => format!("{}", rng.random::<f32>()),
                            _ => format!(
                                "{}.{}e{}",
                                rng.random_range(0..99),
                                rng.random_range(0..99999),
                                rng.random_range(-9..9)
                            ),
                        })
                        .collect::<Vec<_>>();
                    format!("[{}]", row.join(", "))
                })
                .collect::<Vec<_>>();
            let text = format!("[{}]", text.join(","));
            if let Some(general) = by_serde(&text) {
                assert!(by_fast_path(&text).is_some(), "{text}: {general:?}");
            }
            agrees(&text);
        }
    }
}
