//! Median and 90th percentile of measured samples.

/// Median (the mean of the two middle values for an even count) and 90th percentile (nearest
/// rank: the smallest sample with at least 90 % of the samples at or below it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub median: f64,
    pub p90: f64,
}

pub fn summarize(samples: &[f64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let count = sorted.len();
    let median = if count % 2 == 1 {
        sorted[count / 2]
    } else {
        (sorted[count / 2 - 1] + sorted[count / 2]) / 2.0
    };
    Some(Summary {
        count,
        median,
        p90: nearest_rank(&sorted, 90),
    })
}

/// The `percent`-th percentile of `sorted` samples by nearest rank: the smallest sample with
/// at least `percent` % of the samples at or below it. `sorted` must not be empty.
pub fn nearest_rank<T: Copy>(sorted: &[T], percent: usize) -> T {
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_summarize() {
        assert_eq!(summarize(&[]), None);
    }

    #[test]
    fn odd_count_median_is_the_middle_sample() {
        let summary = summarize(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((summary.median, summary.p90), (3.0, 5.0));
    }

    #[test]
    fn even_count_median_is_the_mean_of_the_middle_pair() {
        assert_eq!(summarize(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
    }

    #[test]
    fn p90_is_the_nearest_rank() {
        let samples: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(summarize(&samples).unwrap().p90, 18.0);
        let samples: Vec<f64> = (1..=21).map(f64::from).collect();
        assert_eq!(summarize(&samples).unwrap().p90, 19.0);
        assert_eq!(summarize(&[7.0]).unwrap().p90, 7.0);
    }
}
