//! CART decision trees grown on histograms, the building block of the random forests.
//!
//! Feature values are quantised once per forest into at most [`MAX_BINS`] bins (one per distinct
//! value when there are few, quantiles otherwise). A node then finds its best split by adding its
//! rows into per-bin statistics and scanning the bins, instead of sorting its rows per feature:
//! linear rather than `n log n` per node, which is what makes a hundred trees cheap. A split is
//! stored with a raw threshold (`x <= threshold` goes left), so prediction needs no bins.
//!
//! The split criterion is abstract ([`SplitTarget`]): Gini impurity for classes (leaves hold
//! class probabilities), squared error for numbers (leaves hold the mean).

use rand::RngExt;
use rand::rngs::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::linalg::Matrix;

/// Bins per feature; bin indices fit a `u8`.
pub(crate) const MAX_BINS: usize = 256;

/// Feature values replaced by bin indices, feature by feature (a node scans one feature at a time).
pub(crate) struct Binned {
    n_rows: usize,
    bins: Vec<u8>,
    /// Per feature, increasing; bin `b` holds values in `(thresholds[b - 1], thresholds[b]]`.
    thresholds: Vec<Vec<f64>>,
}

impl Binned {
    pub(crate) fn new(x: &Matrix) -> Self {
        let n_rows = x.n_rows();
        let mut bins = Vec::with_capacity(n_rows * x.n_cols());
        let mut thresholds = Vec::with_capacity(x.n_cols());
        let mut column = Vec::with_capacity(n_rows);
        for feature in 0..x.n_cols() {
            column.clear();
            column.extend(x.rows().map(|row| row[feature]));
            let cuts = bin_thresholds(&column);
            bins.extend(column.iter().map(|&v| {
                // At most MAX_BINS - 1 thresholds, so the index fits.
                u8::try_from(cuts.partition_point(|&t| t < v)).unwrap_or(u8::MAX)
            }));
            thresholds.push(cuts);
        }
        Self {
            n_rows,
            bins,
            thresholds,
        }
    }

    fn n_features(&self) -> usize {
        self.thresholds.len()
    }

    fn bin(&self, feature: usize, row: usize) -> usize {
        usize::from(self.bins[feature * self.n_rows + row])
    }
}

/// Cut points between distinct values: midpoints when there are at most [`MAX_BINS`] distinct
/// values, else values at evenly spaced quantiles.
fn bin_thresholds(values: &[f64]) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut distinct = sorted.clone();
    distinct.dedup();
    if distinct.len() <= MAX_BINS {
        return distinct.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
    }
    let mut cuts: Vec<f64> = (1..MAX_BINS)
        .map(|q| sorted[q * sorted.len() / MAX_BINS])
        .collect();
    cuts.dedup();
    // The largest value must stay right of every cut, or its bin would be empty.
    if cuts.last() == sorted.last() {
        cuts.pop();
    }
    cuts
}

/// Knobs of one tree.
pub(crate) struct TreeSettings {
    pub max_depth: usize,
    /// Nodes with fewer rows become leaves.
    pub min_samples_split: usize,
    /// Features tried per split (among those not constant in the node).
    pub max_features: usize,
}

/// The quantity a tree predicts, seen through per-bin sufficient statistics.
pub(crate) trait SplitTarget {
    /// Length of a statistics vector.
    fn width(&self) -> usize;
    /// Length of a leaf value.
    fn leaf_width(&self) -> usize;
    fn add(&self, stats: &mut [f64], row: usize);
    fn count(&self, stats: &[f64]) -> f64;
    /// A score whose sum over two children is larger for better splits (negated impurity up to
    /// terms that do not depend on the split).
    fn purity(&self, stats: &[f64]) -> f64;
    fn is_pure(&self, stats: &[f64]) -> bool;
    fn leaf(&self, stats: &[f64], out: &mut Vec<f64>);
}

/// Class labels; statistics are class counts, leaves class probabilities.
pub(crate) struct Classes<'a> {
    pub labels: &'a [usize],
    pub n_classes: usize,
}

impl SplitTarget for Classes<'_> {
    fn width(&self) -> usize {
        self.n_classes
    }

    fn leaf_width(&self) -> usize {
        self.n_classes
    }

    fn add(&self, stats: &mut [f64], row: usize) {
        stats[self.labels[row]] += 1.0;
    }

    fn count(&self, stats: &[f64]) -> f64 {
        stats.iter().sum()
    }

    /// `Σ c²/n`: weighted Gini impurity is `n - Σ c²/n`.
    fn purity(&self, stats: &[f64]) -> f64 {
        let n = self.count(stats);
        if n == 0.0 {
            return 0.0;
        }
        stats.iter().map(|c| c * c).sum::<f64>() / n
    }

    fn is_pure(&self, stats: &[f64]) -> bool {
        stats.iter().filter(|&&c| c > 0.0).count() <= 1
    }

    fn leaf(&self, stats: &[f64], out: &mut Vec<f64>) {
        let n = self.count(stats);
        out.extend(stats.iter().map(|c| c / n));
    }
}

/// Numeric targets; statistics are `[n, Σy, Σy²]`, leaves the mean.
pub(crate) struct Values<'a> {
    pub values: &'a [f64],
}

impl SplitTarget for Values<'_> {
    fn width(&self) -> usize {
        3
    }

    fn leaf_width(&self) -> usize {
        1
    }

    fn add(&self, stats: &mut [f64], row: usize) {
        let y = self.values[row];
        stats[0] += 1.0;
        stats[1] += y;
        stats[2] += y * y;
    }

    fn count(&self, stats: &[f64]) -> f64 {
        stats[0]
    }

    /// `(Σy)²/n`: the squared error is `Σy² - (Σy)²/n`.
    fn purity(&self, stats: &[f64]) -> f64 {
        if stats[0] == 0.0 {
            return 0.0;
        }
        stats[1] * stats[1] / stats[0]
    }

    fn is_pure(&self, stats: &[f64]) -> bool {
        let squared_error = stats[2] - self.purity(stats);
        squared_error <= 1e-12 * stats[2].max(1.0)
    }

    fn leaf(&self, stats: &[f64], out: &mut Vec<f64>) {
        out.push(stats[1] / stats[0]);
    }
}

/// A fitted tree. Nodes are stored in pre-order, so every child comes after its parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Tree {
    nodes: Vec<Node>,
    leaf_width: usize,
    /// `leaf_width` values per leaf.
    leaf_values: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Node {
    Split {
        feature: u32,
        threshold: f64,
        left: u32,
        right: u32,
    },
    Leaf {
        index: u32,
    },
}

impl Tree {
    /// Grows a tree on `rows` (indices into `binned`, repeated for bootstrap samples; below
    /// 2³², which the forest checks).
    pub(crate) fn grow(
        binned: &Binned,
        target: &impl SplitTarget,
        settings: &TreeSettings,
        rows: &mut [usize],
        rng: &mut Xoshiro256PlusPlus,
    ) -> Self {
        let mut grower = Grower {
            binned,
            target,
            settings,
            rng,
            features: (0..binned.n_features()).collect(),
            histogram: vec![0.0; MAX_BINS * target.width()],
            by_bin: Vec::new(),
            left: vec![0.0; target.width()],
            right: vec![0.0; target.width()],
            tree: Tree {
                nodes: Vec::new(),
                leaf_width: target.leaf_width(),
                leaf_values: Vec::new(),
            },
        };
        grower.grow(rows, 0);
        grower.tree
    }

    /// The leaf values `row` falls into.
    pub(crate) fn predict(&self, row: &[f64]) -> &[f64] {
        let mut index = 0;
        loop {
            match self.nodes[index] {
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    index = if row[feature as usize] <= threshold {
                        left as usize
                    } else {
                        right as usize
                    };
                }
                Node::Leaf { index: leaf } => {
                    let start = leaf as usize * self.leaf_width;
                    return &self.leaf_values[start..start + self.leaf_width];
                }
            }
        }
    }

    pub(crate) fn n_leaves(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| matches!(n, Node::Leaf { .. }))
            .count()
    }

    pub(crate) fn depth(&self) -> usize {
        fn depth_from(nodes: &[Node], index: usize) -> usize {
            match nodes[index] {
                Node::Leaf { .. } => 0,
                Node::Split { left, right, .. } => {
                    1 + depth_from(nodes, left as usize).max(depth_from(nodes, right as usize))
                }
            }
        }
        depth_from(&self.nodes, 0)
    }

    /// Checks that every index is in range and every child follows its parent, so [`Tree::predict`]
    /// neither panics nor loops on loaded parameters.
    pub(crate) fn check(&self, width: usize, leaf_width: usize) -> Result<(), String> {
        if self.nodes.is_empty() || self.leaf_width != leaf_width {
            return Err("a tree is empty or has the wrong leaf width".to_owned());
        }
        for (index, node) in self.nodes.iter().enumerate() {
            let ok = match *node {
                Node::Split {
                    feature,
                    left,
                    right,
                    ..
                } => {
                    (feature as usize) < width
                        && [left, right]
                            .iter()
                            .all(|&c| (c as usize) > index && (c as usize) < self.nodes.len())
                }
                Node::Leaf { index: leaf } => {
                    (leaf as usize + 1) * self.leaf_width <= self.leaf_values.len()
                }
            };
            if !ok {
                return Err(format!("tree node {index} is out of range"));
            }
        }
        Ok(())
    }
}

struct Grower<'a, T> {
    binned: &'a Binned,
    target: &'a T,
    settings: &'a TreeSettings,
    rng: &'a mut Xoshiro256PlusPlus,
    /// Feature order, reshuffled as each node draws its candidates.
    features: Vec<usize>,
    /// Per-bin statistics of the feature being scanned, reused across nodes.
    histogram: Vec<f64>,
    /// `(bin, row)` pairs of a small node, reused across nodes.
    by_bin: Vec<u64>,
    /// Statistics of the two sides of a candidate split.
    left: Vec<f64>,
    right: Vec<f64>,
    tree: Tree,
}

struct Split {
    feature: usize,
    /// Rows in bins `0..=bin` go left.
    bin: usize,
}

impl<T: SplitTarget> Grower<'_, T> {
    /// Grows the subtree over `rows` and returns its root's index.
    fn grow(&mut self, rows: &mut [usize], depth: usize) -> u32 {
        let mut stats = vec![0.0; self.target.width()];
        rows.iter()
            .for_each(|&row| self.target.add(&mut stats, row));

        let splittable = depth < self.settings.max_depth
            && rows.len() >= self.settings.min_samples_split.max(2)
            && !self.target.is_pure(&stats);
        let split = if splittable {
            self.best_split(rows, &stats)
        } else {
            None
        };
        let index = self.tree.nodes.len() as u32;
        let Some(split) = split else {
            let leaf = (self.tree.leaf_values.len() / self.tree.leaf_width) as u32;
            self.target.leaf(&stats, &mut self.tree.leaf_values);
            self.tree.nodes.push(Node::Leaf { index: leaf });
            return index;
        };

        let boundary = partition(rows, |&row| {
            self.binned.bin(split.feature, row) <= split.bin
        });
        // A placeholder until the children's indices are known.
        self.tree.nodes.push(Node::Leaf { index: 0 });
        let (left_rows, right_rows) = rows.split_at_mut(boundary);
        let left = self.grow(left_rows, depth + 1);
        let right = self.grow(right_rows, depth + 1);
        self.tree.nodes[index as usize] = Node::Split {
            feature: split.feature as u32,
            threshold: self.binned.thresholds[split.feature][split.bin],
            left,
            right,
        };
        index
    }

    /// The best split over up to `max_features` randomly drawn features that vary in the node.
    fn best_split(&mut self, rows: &[usize], parent: &[f64]) -> Option<Split> {
        let n_features = self.features.len();
        let mut tried = 0;
        let mut best: Option<(f64, Split)> = None;
        for i in 0..n_features {
            if tried == self.settings.max_features {
                break;
            }
            // Incremental Fisher–Yates: the first `i` entries are this node's draws so far.
            let j = self.rng.random_range(i..n_features);
            self.features.swap(i, j);
            let feature = self.features[i];
            let n_bins = self.binned.thresholds[feature].len() + 1;
            if n_bins == 1 {
                continue;
            }
            let candidate = if rows.len() < n_bins {
                self.scan_sorted(feature, rows, parent)
            } else {
                self.scan_histogram(feature, n_bins, rows, parent)
            };
            // A feature constant in the node has no candidate and does not count as tried.
            if let Some((score, bin)) = candidate {
                tried += 1;
                if best.as_ref().is_none_or(|(s, _)| score > *s) {
                    best = Some((score, Split { feature, bin }));
                }
            }
        }
        best.map(|(_, split)| split)
    }

    /// The best `(score, bin)` of one feature from per-bin statistics: for nodes with at least as
    /// many rows as bins.
    fn scan_histogram(
        &mut self,
        feature: usize,
        n_bins: usize,
        rows: &[usize],
        parent: &[f64],
    ) -> Option<(f64, usize)> {
        let width = self.target.width();
        let histogram = &mut self.histogram[..n_bins * width];
        histogram.fill(0.0);
        for &row in rows {
            let bin = self.binned.bin(feature, row);
            self.target
                .add(&mut histogram[bin * width..(bin + 1) * width], row);
        }
        self.left.fill(0.0);
        let mut best = None;
        for bin in 0..n_bins - 1 {
            let stats = &histogram[bin * width..(bin + 1) * width];
            if self.target.count(stats) == 0.0 {
                continue;
            }
            self.left.iter_mut().zip(stats).for_each(|(l, s)| *l += s);
            if let Some(score) = split_score(self.target, parent, &self.left, &mut self.right) {
                if best.is_none_or(|(s, _)| score > s) {
                    best = Some((score, bin));
                }
            } else {
                break;
            }
        }
        best
    }

    /// The same by sorting the node's rows by bin: for small nodes, where most bins are empty and
    /// scanning them all would dominate.
    fn scan_sorted(
        &mut self,
        feature: usize,
        rows: &[usize],
        parent: &[f64],
    ) -> Option<(f64, usize)> {
        // Packed as `bin << 32 | row` so sorting compares plain integers.
        self.by_bin.clear();
        self.by_bin.extend(
            rows.iter()
                .map(|&row| ((self.binned.bin(feature, row) as u64) << 32) | row as u64),
        );
        self.by_bin.sort_unstable();
        self.left.fill(0.0);
        let mut best = None;
        let mut next = 0;
        while next < self.by_bin.len() {
            let bin = self.by_bin[next] >> 32;
            while next < self.by_bin.len() && self.by_bin[next] >> 32 == bin {
                let row = (self.by_bin[next] & u64::from(u32::MAX)) as usize;
                self.target.add(&mut self.left, row);
                next += 1;
            }
            match split_score(self.target, parent, &self.left, &mut self.right) {
                Some(score) if best.is_none_or(|(s, _)| score > s) => {
                    best = Some((score, bin as usize));
                }
                Some(_) => {}
                None => break,
            }
        }
        best
    }
}

/// The score of sending `left` one way and the rest of `parent` the other; `None` when nothing is
/// left for the right side. `right` is scratch space.
fn split_score(
    target: &impl SplitTarget,
    parent: &[f64],
    left: &[f64],
    right: &mut [f64],
) -> Option<f64> {
    right
        .iter_mut()
        .zip(parent.iter().zip(left))
        .for_each(|(r, (p, l))| *r = p - l);
    if target.count(right) <= 0.5 {
        return None;
    }
    Some(target.purity(left) + target.purity(right))
}

/// Moves the rows satisfying `goes_left` to the front; returns how many there are.
fn partition(rows: &mut [usize], goes_left: impl Fn(&usize) -> bool) -> usize {
    let mut boundary = 0;
    for i in 0..rows.len() {
        if goes_left(&rows[i]) {
            rows.swap(boundary, i);
            boundary += 1;
        }
    }
    boundary
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn matrix(rows: &[&[f64]]) -> Matrix {
        let mut m = Matrix::with_columns(rows[0].len(), rows.len());
        rows.iter().for_each(|r| m.push_row(r));
        m
    }

    #[test]
    fn few_distinct_values_get_midpoint_thresholds() {
        assert_eq!(bin_thresholds(&[1.0, 0.0, 1.0, 3.0]), [0.5, 2.0]);
        assert!(bin_thresholds(&[4.0, 4.0]).is_empty());
    }

    #[test]
    fn many_distinct_values_get_quantile_thresholds() {
        let values: Vec<f64> = (0..10_000).map(f64::from).collect();
        let cuts = bin_thresholds(&values);
        assert_eq!(cuts.len(), MAX_BINS - 1);
        assert!(cuts.windows(2).all(|w| w[0] < w[1]));
        let binned = Binned::new(&matrix(
            &values.iter().map(std::slice::from_ref).collect::<Vec<_>>(),
        ));
        assert_eq!(binned.bin(0, 0), 0);
        assert_eq!(binned.bin(0, 9_999), MAX_BINS - 1);
    }

    #[test]
    fn a_tree_separates_xor() {
        // XOR needs a split with no immediate gain: the tree must still take it.
        let x = matrix(&[&[0.0, 0.0], &[0.0, 1.0], &[1.0, 0.0], &[1.0, 1.0]]);
        let labels = [0, 1, 1, 0];
        let binned = Binned::new(&x);
        let settings = TreeSettings {
            max_depth: 8,
            min_samples_split: 2,
            max_features: 2,
        };
        let mut rows: Vec<usize> = (0..4).collect();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let target = Classes {
            labels: &labels,
            n_classes: 2,
        };
        let tree = Tree::grow(&binned, &target, &settings, &mut rows, &mut rng);
        tree.check(2, 2).unwrap();
        for (row, &label) in x.rows().zip(&labels) {
            assert_eq!(tree.predict(row)[label], 1.0);
        }
        assert_eq!(tree.n_leaves(), 4);
        assert_eq!(tree.depth(), 2);
    }

    #[test]
    fn a_regression_tree_predicts_leaf_means() {
        let x = matrix(&[&[1.0], &[2.0], &[10.0], &[11.0]]);
        let values = [1.0, 3.0, 10.0, 10.0];
        let settings = TreeSettings {
            max_depth: 1,
            min_samples_split: 2,
            max_features: 1,
        };
        let mut rows: Vec<usize> = (0..4).collect();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let tree = Tree::grow(
            &Binned::new(&x),
            &Values { values: &values },
            &settings,
            &mut rows,
            &mut rng,
        );
        assert_eq!(tree.predict(&[0.0]), [2.0]);
        assert_eq!(tree.predict(&[50.0]), [10.0]);
    }

    #[test]
    fn check_rejects_children_that_point_backwards() {
        let tree = Tree {
            nodes: vec![Node::Split {
                feature: 0,
                threshold: 0.0,
                left: 0,
                right: 0,
            }],
            leaf_width: 1,
            leaf_values: vec![],
        };
        assert!(tree.check(1, 1).is_err());
    }
}
