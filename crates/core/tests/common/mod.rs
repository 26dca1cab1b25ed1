//! Shared by the definition tests.

use redrive_core::definition::parse_pipeline_text;

/// Each case replaces text `from` of `base` with `to`; the definition must then
/// be refused with exactly one problem at `path` and `line` whose allowed
/// values contain `allowed`.
pub fn assert_each_reported(base: &str, cases: &[(&str, &str, &str, u32, &str)]) {
    for (from, to, path, line, allowed) in cases {
        assert!(base.contains(from), "{from}");
        let text = base.replacen(from, to, 1);
        let ps = parse_pipeline_text(&text).expect_err(to);
        assert_eq!(ps.len(), 1, "{to}: {ps:?}");
        let p = &ps[0];
        assert_eq!((p.path.as_str(), p.line), (*path, Some(*line)), "{to}: {p}");
        assert!(p.allowed.as_deref().unwrap_or_default().contains(allowed), "{to}: {p}");
    }
}
