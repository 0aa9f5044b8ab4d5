//! The backend's metrics around a run: scraped and differenced (the parser is
//! `switchyard_runtime::exposition`, re-exported here).

pub use switchyard_runtime::exposition::{Sample, parse, sum};

/// Mean batch size and batches executed for a model version between two scrapes.
pub struct BatchStats {
    pub batches: f64,
    pub mean_rows: f64,
}

/// `GET /metrics` on an admin listener, parsed.
pub async fn scrape(admin: &str) -> anyhow::Result<Vec<Sample>> {
    let (status, body) = crate::http::get(admin, "/metrics").await?;
    anyhow::ensure!(status == 200, "GET http://{admin}/metrics answered {status}");
    Ok(parse(&String::from_utf8_lossy(&body)))
}

/// `version` None: every version of the model (a request without one goes to the newest).
pub fn batch_stats(before: &[Sample], after: &[Sample], model: &str, version: Option<&str>) -> BatchStats {
    let mut want = vec![("model", model)];
    want.extend(version.map(|v| ("version", v)));
    let d = |n: &str| sum(after, n, &want) - sum(before, n, &want);
    let batch_size = &switchyard_contract::metrics::BATCH_SIZE;
    let batches = d(&batch_size.series("_count"));
    BatchStats { batches, mean_rows: d(&batch_size.series("_sum")) / batches.max(1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_stats_of_a_model_without_a_version_count_every_version() {
        let before = parse(
            "switchyard_batch_size_count{model=\"mlp\",version=\"v1\"} 1\nswitchyard_batch_size_sum{model=\"mlp\",version=\"v1\"} 1\n",
        );
        let after = parse(
            "switchyard_batch_size_count{model=\"mlp\",version=\"v1\"} 3\nswitchyard_batch_size_sum{model=\"mlp\",version=\"v1\"} 9\n\
             switchyard_batch_size_count{model=\"mlp\",version=\"v2\"} 2\nswitchyard_batch_size_sum{model=\"mlp\",version=\"v2\"} 2\n",
        );
        let all = batch_stats(&before, &after, "mlp", None);
        assert_eq!((all.batches, all.mean_rows), (4.0, 10.0 / 4.0));
        let v1 = batch_stats(&before, &after, "mlp", Some("v1"));
        assert_eq!((v1.batches, v1.mean_rows), (2.0, 4.0));
    }
}
