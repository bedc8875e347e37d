//! Intermediate scores a template reports while it trains (`logger.report(score, step)` in the
//! SDK): METRICS log records that hold both keys below. The train worker stops a trial whose
//! reports fall clearly behind finished trials' at the same step (the budget's
//! `EARLY_STOPPING`).

use serde_json::Value;

/// The key of a report's step (an epoch, a number of examples seen: any increasing number).
pub const STEP: &str = "step";
/// The key of a report's score (higher is better, like the score `evaluate` returns).
pub const SCORE: &str = "intermediate_score";

/// The `(step, score)` of a METRICS payload that is a report, with both finite.
pub fn parse(payload: &Value) -> Option<(f64, f64)> {
    let step = payload.get(STEP)?.as_f64()?;
    let score = payload.get(SCORE)?.as_f64()?;
    (step.is_finite() && score.is_finite()).then_some((step, score))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_report_holds_a_finite_step_and_score() {
        assert_eq!(
            parse(&json!({"step": 3, "intermediate_score": 0.5, "loss": 1.0})),
            Some((3.0, 0.5))
        );
        assert_eq!(parse(&json!({"step": 3})), None);
        assert_eq!(
            parse(&json!({"step": "3", "intermediate_score": 0.5})),
            None
        );
        assert_eq!(parse(&json!({"step": 1, "intermediate_score": null})), None);
    }
}
