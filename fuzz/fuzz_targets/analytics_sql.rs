//! The analytics plugin's SQL checker (`plugins/analytics/src/rules.rs`): what members submit as
//! a query, parsed by sqlparser inside the plugin and checked against the datasets' rules.
//!
//! Properties:
//! * it never panics, whatever the text (the parser's recursion limit bounds nesting);
//! * a query it accepts is accepted again, with the same analysis, when its canonical rendering
//!   (what the clean room runs) is checked: what runs is what was checked;
//! * an accepted query reads only registered datasets and, when an aggregate-only dataset is
//!   among them, names the output column holding COUNT(*) and the largest minimum group size.
#![no_main]

use cgs_plugin_analytics::rules::{Column, DatasetRules, analyze};
use libfuzzer_sys::fuzz_target;

fn col(name: &str, output: bool, aggregate: bool, join: bool) -> Column {
    Column { name: name.into(), kind: "int".into(), output, aggregate, join }
}

fn lookup(name: &str) -> Option<DatasetRules> {
    match name {
        "sales" => Some(DatasetRules {
            columns: vec![
                col("customer_id", false, false, true),
                col("region", true, true, false),
                col("amount", false, true, false),
                col("secret", false, false, false),
            ],
            aggregate_only: true,
            min_group_size: 10,
        }),
        "customers" => Some(DatasetRules {
            columns: vec![col("id", false, true, true), col("segment", true, true, false), col("secret", false, false, false)],
            aggregate_only: false,
            min_group_size: 0,
        }),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else { return };
    let Ok(a) = analyze(sql, &lookup) else { return };
    let again = analyze(&a.canonical_sql, &lookup)
        .unwrap_or_else(|r| panic!("accepted {sql:?}, but its canonical form {:?} is refused: {r:?}", a.canonical_sql));
    assert_eq!(again, a, "the canonical form of {sql:?} analyses differently");
    assert!(a.inputs.iter().all(|d| lookup(d).is_some()), "{a:?}");
    if a.inputs.iter().any(|d| d == "sales") {
        assert!(a.group_size_column.is_some() && a.min_group_size == 10, "{sql:?}: {a:?}");
    }
});
