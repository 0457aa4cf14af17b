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
//! The output is then filtered: every row whose group size (the ticket's `group_size_column`)
//! is below `min_group_size` is dropped. The output columns are named as the ticket's `outputs`.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use datafusion::arrow::array::{Array, Int64Array, RecordBatch};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;
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

/// One input: a dataset's name, schema and its CSV contents in clear.
pub struct Input {
    /// The dataset's name (the table's name in the SQL).
    pub name: String,
    /// Its columns, in the file's order.
    pub schema: Vec<ColumnSpec>,
    /// The CSV, with a header row naming the columns.
    pub csv: Vec<u8>,
}

/// What to run, from a ticket.
pub struct Job<'a> {
    /// The canonical SQL.
    pub sql: &'a str,
    /// The output columns' names, in order.
    pub outputs: &'a [String],
    /// The output column holding COUNT(*), if groups must be dropped.
    pub group_size_column: Option<&'a str>,
    /// Drop groups smaller than this.
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
    /// Groups dropped for being smaller than `min_group_size`.
    pub groups_dropped: u64,
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
/// order, so that no value is read as another column.
fn read_csv(input: &Input) -> Result<(SchemaRef, Vec<RecordBatch>, u64)> {
    let schema = arrow_schema(&input.schema)?;
    let header = input.csv.split(|b| *b == b'\n').next().unwrap_or_default();
    let header = String::from_utf8_lossy(header);
    let names: Vec<String> =
        header.trim_end_matches('\r').split(',').map(|s| s.trim().trim_matches('"').to_string()).collect();
    let expected: Vec<&str> = input.schema.iter().map(|c| c.name.as_str()).collect();
    if names.len() != expected.len() || names.iter().zip(&expected).any(|(a, b)| !a.eq_ignore_ascii_case(b)) {
        bail!(
            "the file of dataset `{}` has the columns [{}], its schema says [{}] (same names, same order)",
            input.name,
            names.join(", "),
            expected.join(", ")
        );
    }
    let reader = datafusion::arrow::csv::ReaderBuilder::new(schema.clone())
        .with_header(true)
        .build(std::io::Cursor::new(&input.csv))
        .with_context(|| format!("reading dataset `{}`", input.name))?;
    let mut batches = Vec::new();
    let mut rows = 0u64;
    for b in reader {
        let b = b.with_context(|| format!("dataset `{}` does not match its schema", input.name))?;
        rows += b.num_rows() as u64;
        batches.push(b);
    }
    Ok((schema, batches, rows))
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
    let stmt = parse_checked(job.sql)?;
    // Two partitions: this runs on small confidential VMs; DataFusion's default is one per core.
    let ctx =
        SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2).with_information_schema(false));
    let mut rows_in = 0;
    for input in &inputs {
        let (schema, batches, rows) = read_csv(input)?;
        rows_in += rows;
        let table = MemTable::try_new(schema, vec![batches])?;
        ctx.register_table(input.name.to_ascii_lowercase().as_str(), Arc::new(table))?;
    }
    let state = ctx.state();
    let plan = state.statement_to_plan(DfStatement::Statement(Box::new(stmt))).await.context("planning the query")?;
    SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false).verify_plan(&plan)?;
    let batches = ctx.execute_logical_plan(plan).await?.collect().await.context("running the query")?;
    finish(job, batches, rows_in)
}

/// Drop small groups, name the columns as the ticket does, write CSV.
fn finish(job: &Job<'_>, batches: Vec<RecordBatch>, rows_in: u64) -> Result<Outcome> {
    let gsc = match job.group_size_column {
        Some(name) => Some(
            job.outputs
                .iter()
                .position(|o| o.eq_ignore_ascii_case(name))
                .ok_or_else(|| anyhow!("the ticket's group size column `{name}` is not among its outputs"))?,
        ),
        None if job.min_group_size > 1 => {
            bail!("the ticket asks for a minimum group size but names no group size column")
        }
        None => None,
    };
    let mut out = Vec::new();
    let mut writer = datafusion::arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
    let (mut rows_out, mut groups_dropped) = (0u64, 0u64);
    let mut wrote_any = false;
    for batch in batches {
        if batch.num_columns() != job.outputs.len() {
            bail!("the query returned {} columns, the ticket names {} outputs", batch.num_columns(), job.outputs.len());
        }
        let batch = match gsc {
            Some(i) => {
                let sizes = cast(batch.column(i), &DataType::Int64)?;
                let sizes = sizes
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .ok_or_else(|| anyhow!("group sizes are not integers"))?;
                let min = i64::try_from(job.min_group_size).unwrap_or(i64::MAX);
                let keep: datafusion::arrow::array::BooleanArray =
                    sizes.iter().map(|n| Some(n.is_some_and(|n| n >= min))).collect();
                let kept = filter_record_batch(&batch, &keep)?;
                groups_dropped += (batch.num_rows() - kept.num_rows()) as u64;
                kept
            }
            None => batch,
        };
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
    Ok(Outcome { csv: out, rows_in, rows_out, groups_dropped })
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
            csv: csv.into_bytes(),
        }
    }

    fn outputs(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn small_groups_are_dropped_and_columns_named_as_the_ticket() -> Result<()> {
        let sql = "SELECT region, COUNT(*) AS n, SUM(amount) AS total FROM sales GROUP BY region ORDER BY region";
        let outs = outputs(&["region", "n", "total"]);
        let job = Job { sql, outputs: &outs, group_size_column: Some("n"), min_group_size: 2 };
        let o = run(&job, vec![sales()]).await?;
        assert_eq!(String::from_utf8(o.csv)?, "region,n,total\nnorth,3,7.5\nsouth,2,4.0\n");
        assert_eq!((o.rows_in, o.rows_out, o.groups_dropped), (6, 2, 1), "east (1 row) is dropped");
        // The strictest minimum: 3 keeps only north.
        let job = Job { min_group_size: 3, ..job };
        let o = run(&job, vec![sales()]).await?;
        assert_eq!(String::from_utf8(o.csv)?, "region,n,total\nnorth,3,7.5\n");
        // Nothing left: the header alone.
        let job = Job { min_group_size: 100, ..job };
        let o = run(&job, vec![sales()]).await?;
        assert_eq!((String::from_utf8(o.csv)?.as_str(), o.rows_out, o.groups_dropped), ("region,n,total\n", 0, 3));
        Ok(())
    }

    #[tokio::test]
    async fn a_join_of_two_inputs_with_unaliased_outputs() -> Result<()> {
        let customers = Input {
            name: "customers".into(),
            schema: vec![col("id", "int"), col("segment", "text"), col("email", "text")],
            csv: b"id,segment,email\n0,gold,\"a,b@x\"\n1,gold,c@x\n2,silver,d@x\n10,silver,e@x\n11,gold,f@x\n".to_vec(),
        };
        let sql = "SELECT c.segment, COUNT(*), AVG(s.amount) FROM sales AS s JOIN customers AS c ON s.customer_id = c.id GROUP BY c.segment ORDER BY c.segment";
        let outs = outputs(&["segment", "COUNT(*)", "AVG(s.amount)"]);
        let job = Job { sql, outputs: &outs, group_size_column: Some("COUNT(*)"), min_group_size: 1 };
        let o = run(&job, vec![sales(), customers]).await?;
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
        let outs = outputs(&["n"]);
        for sql in ["SELECT COUNT(*) AS n FROM other", "SELECT COUNT(*) AS n FROM information_schema.tables"] {
            let job = Job { sql, outputs: &outs, group_size_column: Some("n"), min_group_size: 1 };
            let e = run(&job, vec![sales()]).await.unwrap_err();
            assert!(format!("{e:#}").contains("not found"), "{sql}: {e:#}");
        }
    }

    #[tokio::test]
    async fn a_file_that_does_not_match_its_schema_is_refused() {
        let outs = outputs(&["n"]);
        let job = Job {
            sql: "SELECT COUNT(*) AS n FROM sales",
            outputs: &outs,
            group_size_column: Some("n"),
            min_group_size: 1,
        };
        let mut swapped = sales();
        swapped.csv = b"region,customer_id,amount\nnorth,1,2\n".to_vec();
        let e = run(&job, vec![swapped]).await.unwrap_err().to_string();
        assert!(
            e.contains("has the columns [region, customer_id, amount], its schema says [customer_id, region, amount]"),
            "{e}"
        );
        let mut typed = sales();
        typed.csv = b"customer_id,region,amount\nseven,north,2\n".to_vec();
        let e = format!("{:#}", run(&job, vec![typed]).await.unwrap_err());
        assert!(e.contains("does not match its schema"), "{e}");
        let job = Job { group_size_column: None, min_group_size: 5, ..job };
        assert!(run(&job, vec![sales()]).await.unwrap_err().to_string().contains("names no group size column"));
    }
}
