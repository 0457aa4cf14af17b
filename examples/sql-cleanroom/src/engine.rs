//! Running a ticket's SQL on Apache DataFusion, in memory.
//!
//! What runs is exactly what CGS checked:
//! * The ticket's `sql` is the checker's canonical rendering. It is parsed here with DataFusion's
//!   own `sqlparser`, which may be another version than the plugin's, and must render back to
//!   the same text. Otherwise the two parsers read it differently, and it is refused.
//! * It must be one plain query: no DDL, DML or statements. The plan is built from that parsed
//!   statement, not from the text again.
//! * Only the ticket's datasets exist as tables, in memory, typed by the ticket's schemas.
//!   There are no files, object stores or catalogs to reach.
//!
//! **Small groups never leave the plan.** Each aggregate-only input gets a hidden row number
//! (the column `"cgs row id"`, a name the plugin's identifiers cannot spell). Before planning,
//! the query's HAVING gets `COUNT(DISTINCT <input>."cgs row id") >= min_group_size` for every
//! reference to such an input, so a group is kept only if it holds enough *distinct rows of each
//! protected dataset*. Rows repeated by a join do not count twice, and rows a LEFT/FULL join pads
//! with NULLs do not count at all. The threshold applies before ORDER BY and LIMIT, so neither
//! reveals a dropped group. `COUNT(*)` (the ticket's `group_size_column`) counts joined rows and
//! is not what is enforced.
//!
//! **Errors withhold data.** An error while reading or running quotes no value: arrow and
//! DataFusion messages can quote input rows, and the clean room's stderr is the host's. The
//! owners see the full message by running `local` on their clear files.
//!
//! The output columns are named as the ticket's `outputs`.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CastKind, Expr, SetExpr, Statement, TableFactor, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use serde::Deserialize;

/// One column of a dataset's schema, as the ticket gives it.
#[derive(Debug, Clone, Deserialize)]
pub struct ColumnSpec {
    /// Its name.
    pub name: String,
    /// `int`, `float`, `text`, `bool` or `date`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// The hidden row number of aggregate-only inputs. The plugin's identifiers (letters, digits,
/// `_`, unquoted) cannot name it.
pub const ROW_ID: &str = "cgs row id";

/// One input: a dataset's name, schema and its CSV contents in clear.
pub struct Input {
    /// The dataset's name (the table's name in the SQL).
    pub name: String,
    /// Its columns, in the file's order.
    pub schema: Vec<ColumnSpec>,
    /// Whether groups must hold `min_group_size` of its distinct rows.
    pub aggregate_only: bool,
    /// The CSV, with a header row naming the columns.
    pub csv: Vec<u8>,
}

/// What to run, from a ticket.
pub struct Job<'a> {
    /// The canonical SQL.
    pub sql: &'a str,
    /// The output columns' names, in order.
    pub outputs: &'a [String],
    /// Keep only groups with at least this many distinct rows of each aggregate-only input
    /// (0 or 1: no threshold; `local --keep-small-groups`).
    pub min_group_size: u64,
}

/// The result of a run.
#[derive(Debug)]
pub struct Outcome {
    /// The output as CSV with a header row (the ticket's output names).
    pub csv: Vec<u8>,
    /// Rows read, all inputs together.
    pub rows_in: u64,
    /// Rows written.
    pub rows_out: u64,
}

/// The Arrow type of a schema type.
fn arrow_type(kind: &str) -> Result<DataType> {
    Ok(match kind {
        "int" => DataType::Int64,
        "float" => DataType::Float64,
        "text" => DataType::Utf8,
        "bool" => DataType::Boolean,
        "date" => DataType::Date32,
        other => bail!("unknown column type `{other}` (int, float, text, bool or date)"),
    })
}

/// The table's schema. Names are lower-cased, as DataFusion normalizes unquoted identifiers; the
/// checker matches names without regard to case.
fn arrow_schema(cols: &[ColumnSpec]) -> Result<SchemaRef> {
    let fields = cols
        .iter()
        .map(|c| Ok(Field::new(c.name.to_ascii_lowercase(), arrow_type(&c.kind)?, true)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

/// Read an input's CSV as typed record batches; the header must name the schema's columns in
/// order, so that no value is read as another column. Aggregate-only inputs get their hidden
/// row number as a last column.
fn read_csv(input: &Input) -> Result<(SchemaRef, Vec<RecordBatch>, u64)> {
    let schema = arrow_schema(&input.schema)?;
    let header = input.csv.split(|b| *b == b'\n').next().unwrap_or_default();
    let header = String::from_utf8_lossy(header);
    let header = header.strip_prefix('\u{feff}').unwrap_or(&header);
    let names: Vec<String> =
        header.trim_end_matches('\r').split(',').map(|s| s.trim().trim_matches('"').to_string()).collect();
    let expected: Vec<&str> = input.schema.iter().map(|c| c.name.as_str()).collect();
    // Which position differs, never what the file holds there: a file without a header would
    // show its first row.
    if names.len() != expected.len() {
        bail!(
            "the file of dataset `{}` has {} columns in its first line, its schema {} ([{}], a header row first)",
            input.name,
            names.len(),
            expected.len(),
            expected.join(", ")
        );
    }
    if let Some(i) = names.iter().zip(&expected).position(|(a, b)| !a.eq_ignore_ascii_case(b)) {
        bail!(
            "the header of dataset `{}` does not name column {} `{}` where its schema does ([{}], same names, same order)",
            input.name,
            i + 1,
            expected[i],
            expected.join(", ")
        );
    }
    let reader = datafusion::arrow::csv::ReaderBuilder::new(schema.clone())
        .with_header(true)
        .build(std::io::Cursor::new(&input.csv))
        .map_err(|_| anyhow!("dataset `{}`: the file is not CSV the reader accepts", input.name))?;
    let out_schema = if input.aggregate_only {
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(ROW_ID, DataType::Int64, false));
        Arc::new(Schema::new(fields))
    } else {
        schema.clone()
    };
    let mut batches = Vec::new();
    let mut rows = 0u64;
    for (i, b) in reader.enumerate() {
        // Arrow's message quotes the row: it is withheld (run `local` on the clear file to see it).
        let b = b.map_err(|_| {
            anyhow!(
                "dataset `{}` does not match its schema: a value in batch {i} does not parse as its column's type \
                 (the reader's message is withheld: it quotes the data; run `local` on the clear file to see it)",
                input.name
            )
        })?;
        let n = b.num_rows() as u64;
        let b = if input.aggregate_only {
            let ids: ArrayRef = Arc::new(Int64Array::from_iter_values((rows..rows + n).map(|r| r as i64)));
            let mut cols = b.columns().to_vec();
            cols.push(ids);
            RecordBatch::try_new(out_schema.clone(), cols)?
        } else {
            b
        };
        rows += n;
        batches.push(b);
    }
    Ok((out_schema, batches, rows))
}

/// Make per-row failures impossible where the engine would fail a whole run on one row's value
/// (which tells the query's author something of that row, whatever the threshold): every CAST
/// becomes TRY_CAST (NULL where a value does not convert), and every `/` and `%` divides by
/// `NULLIF(divisor, 0)` (NULL instead of a division by zero).
fn defuse(stmt: &mut Statement) -> Result<()> {
    let mut failed = None;
    let _ = visit_expressions_mut(stmt, |e| {
        match e {
            Expr::Cast { kind, .. } => *kind = CastKind::TryCast,
            Expr::BinaryOp { op: BinaryOperator::Divide | BinaryOperator::Modulo, right, .. } => {
                match Parser::new(&GenericDialect {})
                    .try_with_sql(&format!("NULLIF({right}, 0)"))
                    .and_then(|mut p| p.parse_expr())
                {
                    Ok(guarded) => **right = guarded,
                    Err(err) => {
                        failed = Some(err);
                        return ControlFlow::Break(());
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    });
    match failed {
        Some(e) => bail!("guarding a division: {e}"),
        None => Ok(()),
    }
}

/// Add the group threshold to the query's HAVING: `COUNT(DISTINCT r."cgs row id") >= min` for
/// every reference `r` (alias or name) to an aggregate-only input.
fn protect(stmt: &mut Statement, protected: &[String], min: u64) -> Result<()> {
    let Statement::Query(q) = stmt else { bail!("the ticket's SQL is not a query") };
    let SetExpr::Select(select) = q.body.as_mut() else { bail!("the ticket's SQL is not one SELECT") };
    let mut refs = Vec::new();
    for from in &select.from {
        for rel in std::iter::once(&from.relation).chain(from.joins.iter().map(|j| &j.relation)) {
            let TableFactor::Table { name, alias, .. } = rel else {
                bail!("the ticket's SQL reads `{rel}`, which is not a dataset");
            };
            if protected.iter().any(|p| p.eq_ignore_ascii_case(&name.to_string())) {
                refs.push(alias.as_ref().map(|a| a.name.value.clone()).unwrap_or_else(|| name.to_string()));
            }
        }
    }
    if refs.is_empty() || min <= 1 {
        return Ok(());
    }
    // Quoted (in the lower case the engine folds unquoted names to), so that an alias that is a
    // keyword (`AS date`) still parses.
    let text: Vec<String> =
        refs.iter().map(|r| format!("COUNT(DISTINCT \"{}\".\"{ROW_ID}\") >= {min}", r.to_ascii_lowercase())).collect();
    let threshold = Parser::new(&GenericDialect {})
        .try_with_sql(&text.join(" AND "))
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| anyhow!("building the group threshold: {e}"))?;
    select.having = Some(match select.having.take() {
        Some(h) => Expr::BinaryOp {
            left: Box::new(Expr::Nested(Box::new(h))),
            op: BinaryOperator::And,
            right: Box::new(Expr::Nested(Box::new(threshold))),
        },
        None => threshold,
    });
    Ok(())
}

/// Parse the ticket's SQL with DataFusion's parser: one query that renders back to itself.
pub fn parse_checked(sql: &str) -> Result<Statement> {
    let mut stmts =
        Parser::parse_sql(&GenericDialect {}, sql).map_err(|e| anyhow!("the ticket's SQL does not parse here: {e}"))?;
    if stmts.len() != 1 {
        bail!("the ticket's SQL holds {} statements; one query runs", stmts.len());
    }
    let stmt = stmts.remove(0);
    if !matches!(stmt, Statement::Query(_)) {
        bail!("the ticket's SQL is not a query");
    }
    let again = stmt.to_string();
    if again != sql {
        bail!(
            "this engine's SQL parser reads the ticket's SQL differently from the checker (it renders as `{again}`): refusing to run what was not checked"
        );
    }
    Ok(stmt)
}

/// Run `job` over `inputs`.
pub async fn run(job: &Job<'_>, inputs: Vec<Input>) -> Result<Outcome> {
    let mut stmt = parse_checked(job.sql)?;
    defuse(&mut stmt)?;
    let protected: Vec<String> = inputs.iter().filter(|i| i.aggregate_only).map(|i| i.name.clone()).collect();
    protect(&mut stmt, &protected, job.min_group_size)?;
    // Two partitions: this runs on small confidential VMs; DataFusion's default is one per core.
    let ctx =
        SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2).with_information_schema(false));
    let mut rows_in = 0;
    for input in &inputs {
        let (schema, batches, rows) = read_csv(input)?;
        rows_in += rows;
        let table = MemTable::try_new(schema, vec![batches])?;
        if ctx.table_exist(input.name.to_ascii_lowercase().as_str())?
            || ctx.register_table(input.name.to_ascii_lowercase().as_str(), Arc::new(table))?.is_some()
        {
            bail!("two datasets of the ticket are named `{}` ignoring case: not run", input.name);
        }
    }
    let state = ctx.state();
    // Planning reads no data: its errors are shown.
    let plan = state.statement_to_plan(DfStatement::Statement(Box::new(stmt))).await.context("planning the query")?;
    SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false).verify_plan(&plan)?;
    let batches = match ctx.execute_logical_plan(plan).await {
        Ok(df) => df.collect().await,
        Err(e) => Err(e),
    }
    .map_err(|_| {
        anyhow!(
            "running the query failed (the engine's message is withheld: it can quote input values; \
             run `local` on the clear files to see it)"
        )
    })?;
    finish(job, batches, rows_in)
}

/// Name the columns as the ticket does, write CSV.
fn finish(job: &Job<'_>, batches: Vec<RecordBatch>, rows_in: u64) -> Result<Outcome> {
    let mut out = Vec::new();
    let mut writer = datafusion::arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
    let mut rows_out = 0u64;
    let mut wrote_any = false;
    for batch in batches {
        if batch.num_columns() != job.outputs.len() {
            bail!("the query returned {} columns, the ticket names {} outputs", batch.num_columns(), job.outputs.len());
        }
        let named: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .zip(job.outputs)
            .map(|(f, name)| Field::new(name, f.data_type().clone(), true))
            .collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(named)), batch.columns().to_vec())?;
        rows_out += batch.num_rows() as u64;
        writer.write(&batch)?;
        wrote_any = true;
    }
    drop(writer);
    if !wrote_any {
        // No batch: still a header, so the owner sees the columns.
        out = csv_line(job.outputs).into_bytes();
    }
    Ok(Outcome { csv: out, rows_in, rows_out })
}

/// One CSV line of `cells`, quoted where needed.
fn csv_line(cells: &[String]) -> String {
    let quoted: Vec<String> = cells
        .iter()
        .map(|c| if c.contains([',', '"', '\n', '\r']) { format!("\"{}\"", c.replace('"', "\"\"")) } else { c.clone() })
        .collect();
    format!("{}\n", quoted.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, kind: &str) -> ColumnSpec {
        ColumnSpec { name: name.into(), kind: kind.into() }
    }

    /// north: 3 sales, south: 2, east: 1 (aggregate-only).
    fn sales() -> Input {
        let mut csv = String::from("customer_id,region,amount\n");
        for (i, (region, n)) in [("north", 3), ("south", 2), ("east", 1)].iter().enumerate() {
            for k in 0..*n {
                csv.push_str(&format!("{},{region},{}.5\n", i * 10 + k, k + 1));
            }
        }
        Input {
            name: "sales".into(),
            schema: vec![col("customer_id", "int"), col("region", "text"), col("amount", "float")],
            aggregate_only: true,
            csv: csv.into_bytes(),
        }
    }

    fn customers(csv: &str) -> Input {
        Input {
            name: "customers".into(),
            schema: vec![col("id", "int"), col("segment", "text"), col("email", "text")],
            aggregate_only: false,
            csv: csv.as_bytes().to_vec(),
        }
    }

    fn outputs(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    async fn csv(sql: &str, outs: &[&str], min: u64, inputs: Vec<Input>) -> Result<String> {
        let outs = outputs(outs);
        let o = run(&Job { sql, outputs: &outs, min_group_size: min }, inputs).await?;
        Ok(String::from_utf8(o.csv)?)
    }

    #[tokio::test]
    async fn small_groups_are_dropped_and_columns_named_as_the_ticket() -> Result<()> {
        let sql = "SELECT region, COUNT(*) AS n, SUM(amount) AS total FROM sales GROUP BY region ORDER BY region";
        let outs = outputs(&["region", "n", "total"]);
        let o = run(&Job { sql, outputs: &outs, min_group_size: 2 }, vec![sales()]).await?;
        assert_eq!(String::from_utf8(o.csv)?, "region,n,total\nnorth,3,7.5\nsouth,2,4.0\n", "east (1 row) is dropped");
        assert_eq!((o.rows_in, o.rows_out), (6, 2));
        // The strictest minimum: 3 keeps only north.
        assert_eq!(csv(sql, &["region", "n", "total"], 3, vec![sales()]).await?, "region,n,total\nnorth,3,7.5\n");
        // Nothing left: the header alone.
        assert_eq!(csv(sql, &["region", "n", "total"], 100, vec![sales()]).await?, "region,n,total\n");
        // No threshold (`local --keep-small-groups`): every group.
        assert!(csv(sql, &["region", "n", "total"], 0, vec![sales()]).await?.contains("east,1,1.5"));
        // A query's own HAVING still applies, with the threshold.
        let having = "SELECT region, COUNT(*) AS n FROM sales GROUP BY region HAVING SUM(amount) > 5 ORDER BY region";
        assert_eq!(csv(having, &["region", "n"], 2, vec![sales()]).await?, "region,n\nnorth,3\n");
        // One group of everything (no GROUP BY), below the minimum: nothing.
        assert_eq!(csv("SELECT COUNT(*) AS n FROM sales", &["n"], 7, vec![sales()]).await?, "n\n");
        assert_eq!(csv("SELECT COUNT(*) AS n FROM sales", &["n"], 6, vec![sales()]).await?, "n\n6\n");
        Ok(())
    }

    #[tokio::test]
    async fn the_threshold_applies_before_order_by_and_limit() -> Result<()> {
        // The smallest group first, one row: east (1 sale) must not be what comes out.
        let sql = "SELECT region, COUNT(*) AS n FROM sales GROUP BY region ORDER BY n LIMIT 1";
        assert_eq!(csv(sql, &["region", "n"], 2, vec![sales()]).await?, "region,n\nsouth,2\n");
        Ok(())
    }

    /// The attack of the issue-16 review: COUNT(*) counts joined rows. A joining party repeats a
    /// key (or pads with an outer join) to lift one protected row over the minimum.
    #[tokio::test]
    async fn rows_repeated_or_padded_by_a_join_do_not_count() -> Result<()> {
        // Customer 0 (one sale of 1.5) appears five times in `customers`, all in segment `x`.
        let mut c = String::from("id,segment,email\n");
        for k in 0..5 {
            c.push_str(&format!("0,x,dup{k}@example.com\n"));
        }
        // Five customers in segment `y` with no sale at all.
        for k in 100..105 {
            c.push_str(&format!("{k},y,pad{k}@example.com\n"));
        }
        let join = "SELECT c.segment, COUNT(*) AS n, SUM(s.amount) AS total FROM sales AS s JOIN customers AS c ON s.customer_id = c.id GROUP BY c.segment";
        let outs = ["segment", "n", "total"];
        // Without the threshold the single sale comes out, five times over.
        assert_eq!(csv(join, &outs, 0, vec![sales(), customers(&c)]).await?, "segment,n,total\nx,5,7.5\n");
        assert_eq!(csv(join, &outs, 2, vec![sales(), customers(&c)]).await?, "segment,n,total\n", "one distinct sale");
        let left = "SELECT c.segment, COUNT(*) AS n, MAX(s.amount) AS top FROM customers AS c LEFT JOIN sales AS s ON c.id = s.customer_id GROUP BY c.segment ORDER BY c.segment";
        let all = csv(left, &["segment", "n", "top"], 0, vec![sales(), customers(&c)]).await?;
        assert_eq!(all, "segment,n,top\nx,5,1.5\ny,5,\n");
        assert_eq!(csv(left, &["segment", "n", "top"], 2, vec![sales(), customers(&c)]).await?, "segment,n,top\n");
        // A self-join: each reference must hold the minimum.
        let own = "SELECT a.region, COUNT(*) AS n FROM sales AS a JOIN sales AS b ON a.customer_id = b.customer_id GROUP BY a.region ORDER BY a.region";
        assert_eq!(csv(own, &["region", "n"], 2, vec![sales()]).await?, "region,n\nnorth,3\nsouth,2\n");
        Ok(())
    }

    /// The second review: a run that fails on one row's value tells the query's author about
    /// that row, whatever the threshold. Casts and divisions do not fail on a value.
    #[tokio::test]
    async fn no_single_row_can_fail_a_run() -> Result<()> {
        // Customer 0's e-mail is not a number, customer 1's is; a failing cast would say so.
        let c = customers("id,segment,email\n0,gold,secret\n1,gold,42\n2,gold,7\n");
        let cast =
            "SELECT c.segment, COUNT(*) AS n, MAX(CAST(c.email AS INT)) AS m FROM customers AS c GROUP BY c.segment";
        assert_eq!(csv(cast, &["segment", "n", "m"], 2, vec![c]).await?, "segment,n,m\ngold,3,42\n");
        // A division by zero exactly where a protected row has a value: NULL, not a failed run.
        let div = "SELECT region, COUNT(*) AS n, SUM(1 / (CASE WHEN amount > 3 THEN 0 ELSE 1 END)) AS s, SUM(amount % 0) AS r FROM sales GROUP BY region ORDER BY region";
        assert_eq!(
            csv(div, &["region", "n", "s", "r"], 2, vec![sales()]).await?,
            "region,n,s,r\nnorth,3,2,\nsouth,2,2,\n"
        );
        Ok(())
    }

    #[tokio::test]
    async fn names_in_any_case_and_keyword_aliases_are_protected_alike() -> Result<()> {
        let upper = "SELECT S.region, COUNT(*) AS n FROM Sales AS S GROUP BY S.region ORDER BY S.region";
        assert_eq!(csv(upper, &["region", "n"], 2, vec![sales()]).await?, "region,n\nnorth,3\nsouth,2\n");
        let keyword = "SELECT date.region, COUNT(*) AS n FROM sales AS date GROUP BY date.region ORDER BY date.region";
        assert_eq!(csv(keyword, &["region", "n"], 2, vec![sales()]).await?, "region,n\nnorth,3\nsouth,2\n");
        let distinct = "SELECT DISTINCT region, COUNT(*) AS n FROM sales GROUP BY region ORDER BY region";
        assert_eq!(csv(distinct, &["region", "n"], 2, vec![sales()]).await?, "region,n\nnorth,3\nsouth,2\n");
        // Two inputs whose names fold alike are refused, not silently one table.
        let mut other = sales();
        other.name = "SALES".into();
        let e = csv("SELECT COUNT(*) AS n FROM sales", &["n"], 1, vec![sales(), other]).await.unwrap_err().to_string();
        assert!(e.contains("ignoring case"), "{e}");
        Ok(())
    }

    #[tokio::test]
    async fn a_join_of_two_inputs_with_unaliased_outputs() -> Result<()> {
        let c = customers("id,segment,email\n0,gold,\"a,b@x\"\n1,gold,c@x\n2,silver,d@x\n10,silver,e@x\n11,gold,f@x\n");
        let sql = "SELECT c.segment, COUNT(*), AVG(s.amount) FROM sales AS s JOIN customers AS c ON s.customer_id = c.id GROUP BY c.segment ORDER BY c.segment";
        let outs = outputs(&["segment", "COUNT(*)", "AVG(s.amount)"]);
        let o = run(&Job { sql, outputs: &outs, min_group_size: 1 }, vec![sales(), c]).await?;
        // sales ids 0,1,2 (north: 1.5, 2.5, 3.5) and 10,11 (south: 1.5, 2.5); 20 has no customer.
        assert_eq!(
            String::from_utf8(o.csv)?,
            "segment,COUNT(*),AVG(s.amount)\ngold,3,2.1666666666666665\nsilver,2,2.5\n"
        );
        assert_eq!(o.rows_in, 11);
        Ok(())
    }

    #[test]
    fn sql_that_this_parser_reads_differently_is_refused() {
        assert!(parse_checked("SELECT region, COUNT(*) AS n FROM sales GROUP BY region").is_ok());
        let e = parse_checked("select region FROM sales").unwrap_err().to_string();
        assert!(e.contains("renders as `SELECT region FROM sales`"), "{e}");
        assert!(parse_checked("SELECT 1; SELECT 2").unwrap_err().to_string().contains("2 statements"));
        assert!(parse_checked("DROP TABLE sales").unwrap_err().to_string().contains("not a query"));
        assert!(parse_checked("SELEC").unwrap_err().to_string().contains("does not parse"));
    }

    #[tokio::test]
    async fn only_the_tickets_datasets_exist() {
        for sql in ["SELECT COUNT(*) AS n FROM other", "SELECT COUNT(*) AS n FROM information_schema.tables"] {
            let e = csv(sql, &["n"], 1, vec![sales()]).await.unwrap_err();
            assert!(format!("{e:#}").contains("not found"), "{sql}: {e:#}");
        }
    }

    #[tokio::test]
    async fn a_file_that_does_not_match_its_schema_is_refused_without_quoting_it() {
        let mut swapped = sales();
        swapped.csv = b"region,customer_id,amount\nnorth,1,2\n".to_vec();
        let e = csv("SELECT COUNT(*) AS n FROM sales", &["n"], 1, vec![swapped]).await.unwrap_err().to_string();
        assert!(e.contains("does not name column 1 `customer_id`") && !e.contains("north"), "{e}");
        // No header at all: the first row is not quoted.
        let mut headless = sales();
        headless.csv = b"7,secret-region,2\n".to_vec();
        let e = csv("SELECT COUNT(*) AS n FROM sales", &["n"], 1, vec![headless]).await.unwrap_err().to_string();
        assert!(e.contains("does not name column 1") && !e.contains("secret-region"), "{e}");
        let mut typed = sales();
        typed.csv = b"customer_id,region,amount\nsecret-value,north,2\n".to_vec();
        let e = format!("{:#}", csv("SELECT COUNT(*) AS n FROM sales", &["n"], 1, vec![typed]).await.unwrap_err());
        assert!(e.contains("does not match its schema") && !e.contains("secret-value") && !e.contains("north"), "{e}");
    }
}
