//! The analysis rules: a query's SQL, parsed here, checked against the rules of every dataset it
//! reads. Pure (no tables), so that every rule is unit-tested natively.
//!
//! The checker is an allowlist: a single `SELECT` over registered datasets, joined with
//! `JOIN … ON` equalities, with `WHERE`, `GROUP BY`, `HAVING`, `ORDER BY`, `LIMIT`, and the
//! expressions and functions listed below. Anything else — subqueries, CTEs, set operations,
//! window functions, wildcards, functions not listed — is refused with what was found, so a
//! construct the checker does not understand can never carry a column past a rule.
//!
//! Per column (the dataset's owner sets them):
//! * `output`: may appear un-aggregated in the output, in `GROUP BY`, `WHERE` and `ORDER BY`;
//! * `aggregate`: may appear inside `COUNT`, `SUM`, `AVG`, `MIN`, `MAX`;
//! * `join`: may be a join key (`JOIN … ON a.x = b.y`).
//!
//! Per dataset: `aggregate_only` with `min_group_size`: a query reading it must aggregate (every
//! output column aggregated or grouped) and output `COUNT(*)`. The clean room keeps only groups
//! holding at least the largest `min_group_size` of its inputs (the strictest rule wins) in
//! *distinct rows of each aggregate-only input*, inside the plan (examples/sql-cleanroom).
//!
//! The clean room runs the checker's canonical rendering of the parsed query (`canonical_sql`),
//! not the text the client sent, so what runs is what was checked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, InTarget, JoinConstraint,
    JoinOperator, ObjectName, ObjectNamePart, OrderByKind, SelectItem, SetExpr, Statement, TableFactor,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

/// The longest SQL text accepted.
pub const MAX_SQL: usize = 16 * 1024;
/// The parser's nesting limit.
const RECURSION_LIMIT: usize = 32;

/// One column of a dataset's schema with its rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// Its name (a SQL identifier: letters, digits, `_`).
    pub name: String,
    /// Its type (`int`, `float`, `text`, `bool`, `date`).
    #[serde(rename = "type")]
    pub kind: String,
    /// May appear un-aggregated in the output (and in WHERE, GROUP BY, ORDER BY).
    #[serde(default)]
    pub output: bool,
    /// May appear inside an aggregate function.
    #[serde(default = "yes")]
    pub aggregate: bool,
    /// May be a join key.
    #[serde(default)]
    pub join: bool,
}

fn yes() -> bool {
    true
}

/// The column types a schema may declare.
pub const TYPES: &[&str] = &["int", "float", "text", "bool", "date"];

/// A dataset's rules, as the checker needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetRules {
    /// Its columns.
    pub columns: Vec<Column>,
    /// Queries must aggregate and output `COUNT(*)`.
    pub aggregate_only: bool,
    /// The smallest group the clean room may output (aggregate-only datasets).
    pub min_group_size: u64,
}

/// A query that passed: what the ticket and the clean room need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysis {
    /// The datasets it reads, in order of first appearance.
    pub inputs: Vec<String>,
    /// The parsed query, rendered again: what the clean room runs.
    pub canonical_sql: String,
    /// Output column names.
    pub outputs: Vec<String>,
    /// The output column holding `COUNT(*)`, when an input is aggregate-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_size_column: Option<String>,
    /// The largest `min_group_size` of its aggregate-only inputs (0: none).
    pub min_group_size: u64,
}

/// Why a query is refused: a code and a sentence naming the column and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `InvalidSql`, `UnsupportedSql`, `UnknownDataset`, `UnknownColumn`, `AmbiguousColumn`,
    /// `ColumnNotAllowedInOutput`, `ColumnNotAggregatable`, `ColumnNotJoinable`,
    /// `AggregationRequired`, `GroupSizeRequired`.
    pub code: &'static str,
    /// What, where, which rule.
    pub message: String,
}

fn refuse<T>(code: &'static str, message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal { code, message: message.into() })
}

fn unsupported<T>(what: impl std::fmt::Display) -> Result<T, Refusal> {
    refuse(
        "UnsupportedSql",
        format!(
            "{what} is not supported: queries are one SELECT over datasets joined with JOIN … ON equalities, \
             with WHERE, GROUP BY, HAVING, ORDER BY and LIMIT"
        ),
    )
}

/// Whether `name` is a plain identifier (what dataset and column names must be).
pub fn valid_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

const AGGREGATES: &[&str] = &["count", "sum", "avg", "min", "max"];
const SCALARS: &[&str] = &["abs", "round", "floor", "ceil", "lower", "upper", "length", "coalesce"];

/// Where a column reference sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Un-aggregated, in the output (SELECT, HAVING, ORDER BY) or GROUP BY.
    Output,
    /// In WHERE.
    Filter,
    /// Inside an aggregate function.
    Aggregate,
    /// In a JOIN's ON condition.
    Join,
}

struct Checker<'a> {
    /// alias (or name) → dataset name.
    aliases: BTreeMap<String, String>,
    datasets: BTreeMap<String, &'a DatasetRules>,
    inputs: Vec<String>,
}

impl Checker<'_> {
    /// Resolve a column reference to (dataset, column).
    fn column(&self, parts: &[String]) -> Result<(String, &Column), Refusal> {
        let (qualifier, name) = match parts {
            [name] => (None, name),
            [q, name] => (Some(q), name),
            _ => return unsupported(format!("the reference `{}`", parts.join("."))),
        };
        let candidates: Vec<&String> = match qualifier {
            Some(q) => match self.aliases.get(&q.to_ascii_lowercase()) {
                Some(d) => vec![d],
                None => return refuse("UnknownColumn", format!("`{q}.{name}`: no dataset or alias `{q}` in FROM")),
            },
            None => self.inputs.iter().collect(),
        };
        let mut found = Vec::new();
        for d in candidates {
            if let Some(c) = self.datasets[d].columns.iter().find(|c| c.name.eq_ignore_ascii_case(name)) {
                found.push((d.clone(), c));
            }
        }
        match found.len() {
            0 => refuse("UnknownColumn", format!("no column `{name}` in {}", self.named(qualifier))),
            1 => Ok(found.remove(0)),
            _ => refuse(
                "AmbiguousColumn",
                format!("column `{name}` is in several inputs: qualify it (`dataset.{name}`)"),
            ),
        }
    }

    fn named(&self, qualifier: Option<&String>) -> String {
        match qualifier.and_then(|q| self.aliases.get(&q.to_ascii_lowercase())) {
            Some(d) => format!("dataset `{d}`"),
            None => format!("the inputs ({})", self.inputs.join(", ")),
        }
    }

    fn check_column(&self, parts: &[String], place: Place) -> Result<(), Refusal> {
        let (d, c) = self.column(parts)?;
        let r = |rule: &str| format!("(rule `{rule}: false` of dataset `{d}`)");
        match place {
            Place::Output if !c.output => refuse(
                "ColumnNotAllowedInOutput",
                format!("column `{d}.{}` may not appear in the output un-aggregated {}", c.name, r("output")),
            ),
            Place::Filter if !c.output => refuse(
                "ColumnNotAllowedInOutput",
                format!(
                    "column `{d}.{}` may not be filtered on: WHERE reveals it as the output would {}",
                    c.name,
                    r("output")
                ),
            ),
            Place::Aggregate if !c.aggregate => refuse(
                "ColumnNotAggregatable",
                format!("column `{d}.{}` may not be aggregated {}", c.name, r("aggregate")),
            ),
            Place::Join if !c.join => {
                refuse("ColumnNotJoinable", format!("column `{d}.{}` is not a join column {}", c.name, r("join")))
            }
            _ => Ok(()),
        }
    }

    /// Check an expression; returns whether it contains an aggregate.
    fn expr(&self, e: &Expr, place: Place) -> Result<bool, Refusal> {
        match e {
            Expr::Identifier(i) => self.check_column(std::slice::from_ref(&i.value), place).map(|()| false),
            Expr::CompoundIdentifier(parts) => {
                self.check_column(&parts.iter().map(|i| i.value.clone()).collect::<Vec<_>>(), place).map(|()| false)
            }
            Expr::Value(_) => Ok(false),
            Expr::Nested(e) | Expr::UnaryOp { expr: e, .. } => self.expr(e, place),
            Expr::IsNull(e) | Expr::IsNotNull(e) | Expr::IsTrue(e) | Expr::IsFalse(e) => self.expr(e, place),
            Expr::Cast { expr, .. } => self.expr(expr, place),
            Expr::BinaryOp { left, right, .. } => Ok(self.expr(left, place)? | self.expr(right, place)?),
            Expr::Between { expr, low, high, .. } => {
                Ok(self.expr(expr, place)? | self.expr(low, place)? | self.expr(high, place)?)
            }
            Expr::Like { expr, pattern, escape_char: None, any: false, .. }
            | Expr::ILike { expr, pattern, escape_char: None, any: false, .. } => {
                Ok(self.expr(expr, place)? | self.expr(pattern, place)?)
            }
            Expr::In { expr, target: InTarget::List(list), .. } => {
                let mut agg = self.expr(expr, place)?;
                for e in list {
                    agg |= self.expr(e, place)?;
                }
                Ok(agg)
            }
            Expr::Case { operand, conditions, else_result, .. } => {
                let mut agg = false;
                if let Some(o) = operand {
                    agg |= self.expr(o, place)?;
                }
                for w in conditions {
                    agg |= self.expr(&w.condition, place)? | self.expr(&w.result, place)?;
                }
                if let Some(e) = else_result {
                    agg |= self.expr(e, place)?;
                }
                Ok(agg)
            }
            Expr::Function(f) => self.function(f, place),
            Expr::Wildcard(_) | Expr::QualifiedWildcard(..) => refuse(
                "UnsupportedSql",
                "`*` is not allowed: name the columns (a wildcard would output every column, whatever its rules)",
            ),
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::In { .. } => unsupported("a subquery"),
            other => unsupported(format!("the expression `{other}`")),
        }
    }

    fn function(&self, f: &sqlparser::ast::Function, place: Place) -> Result<bool, Refusal> {
        let name = object_name(&f.name)?.to_ascii_lowercase();
        if f.over.is_some() || f.filter.is_some() || !f.within_group.is_empty() || f.null_treatment.is_some() {
            return unsupported(format!("`{}` with OVER, FILTER, WITHIN GROUP or NULLS handling", f.name));
        }
        if !matches!(f.parameters, FunctionArguments::None) {
            return unsupported(format!("parameters of `{}`", f.name));
        }
        let aggregate = AGGREGATES.contains(&name.as_str());
        if !aggregate && !SCALARS.contains(&name.as_str()) {
            return refuse(
                "UnsupportedSql",
                format!(
                    "function `{}` is not allowed; aggregates: {}; others: {}",
                    f.name,
                    AGGREGATES.join(", "),
                    SCALARS.join(", ")
                ),
            );
        }
        if aggregate && matches!(place, Place::Aggregate) {
            return unsupported(format!("`{}` inside another aggregate", f.name));
        }
        if aggregate && matches!(place, Place::Filter | Place::Join) {
            return refuse(
                "UnsupportedSql",
                format!("`{}` in WHERE or ON: aggregates belong in SELECT or HAVING", f.name),
            );
        }
        let inner = if aggregate { Place::Aggregate } else { place };
        let args = match &f.args {
            FunctionArguments::List(l) => {
                if !l.clauses.is_empty() {
                    return unsupported(format!("clauses in the arguments of `{}`", f.name));
                }
                &l.args
            }
            FunctionArguments::None => return unsupported(format!("`{}` without parentheses", f.name)),
            FunctionArguments::Subquery(_) => return unsupported("a subquery"),
        };
        let mut agg = aggregate;
        for a in args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => agg |= self.expr(e, inner)?,
                // COUNT(*) counts rows: it reveals no column.
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard) if name == "count" && args.len() == 1 => {}
                _ => return unsupported(format!("the arguments of `{}`", f.name)),
            }
        }
        Ok(agg)
    }

    /// A JOIN's ON condition: equalities between join columns, joined with AND.
    fn on(&self, e: &Expr) -> Result<(), Refusal> {
        match e {
            Expr::Nested(e) => self.on(e),
            Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
                self.on(left)?;
                self.on(right)
            }
            Expr::BinaryOp { left, op: BinaryOperator::Eq, right }
                if matches!(**left, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
                    && matches!(**right, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) =>
            {
                self.expr(left, Place::Join)?;
                self.expr(right, Place::Join)?;
                Ok(())
            }
            other => unsupported(format!("the join condition `{other}` (use `a.key = b.key [AND …]`)")),
        }
    }
}

/// The ON condition of a join the checker accepts: `[INNER|LEFT|RIGHT|FULL] JOIN … ON`.
fn on_condition(op: &JoinOperator) -> Option<&Expr> {
    match op {
        JoinOperator::Join(JoinConstraint::On(on))
        | JoinOperator::Inner(JoinConstraint::On(on))
        | JoinOperator::Left(JoinConstraint::On(on))
        | JoinOperator::LeftOuter(JoinConstraint::On(on))
        | JoinOperator::Right(JoinConstraint::On(on))
        | JoinOperator::RightOuter(JoinConstraint::On(on))
        | JoinOperator::FullOuter(JoinConstraint::On(on)) => Some(on),
        _ => None,
    }
}

fn object_name(n: &ObjectName) -> Result<String, Refusal> {
    match n.0.as_slice() {
        [ObjectNamePart::Identifier(i)] => Ok(i.value.clone()),
        _ => unsupported(format!("the name `{n}`")),
    }
}

/// Check `sql` against the rules of the datasets it reads; `datasets` looks a dataset up by name.
pub fn analyze(sql: &str, datasets: &dyn Fn(&str) -> Option<DatasetRules>) -> Result<Analysis, Refusal> {
    if sql.len() > MAX_SQL {
        return refuse("InvalidSql", format!("the SQL text is over {MAX_SQL} bytes"));
    }
    let parse = |text: &str| {
        Parser::new(&GenericDialect {})
            .with_recursion_limit(RECURSION_LIMIT)
            .try_with_sql(text)
            .and_then(|mut p| p.parse_statements())
            .or_else(|e| refuse("InvalidSql", format!("the SQL does not parse: {e}")))
    };
    // What is checked is the canonical rendering, parsed again: the very text the clean room
    // runs. It must render to itself (the fuzzer found string literals with control characters
    // whose rendering parses differently); a text that does not is refused.
    let canonical: String = parse(sql)?.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
    let statements = parse(&canonical)?;
    if statements.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ") != canonical {
        return refuse(
            "InvalidSql",
            "the query has no stable canonical form (it renders to SQL that parses differently): \
             remove control characters and unusual escapes from its literals",
        );
    }
    let [Statement::Query(query)] = statements.as_slice() else {
        return refuse("InvalidSql", "give exactly one SELECT statement");
    };
    // Identifiers are plain: the clean room's engine (DataFusion) folds unquoted names to lower
    // case and keeps quoted ones as written, while names here match without regard to case. A
    // quoted name would let the two read one reference as two columns.
    let tokens = Tokenizer::new(&GenericDialect {}, &canonical)
        .tokenize()
        .or_else(|e| refuse("InvalidSql", format!("the SQL does not parse: {e}")))?;
    if let Some(w) = tokens.iter().find_map(|t| match t {
        Token::Word(w) if w.quote_style.is_some() => Some(w),
        _ => None,
    }) {
        return unsupported(format!(
            "the quoted identifier `{w}` (write names unquoted: letters, digits and `_`; they match without regard to case)"
        ));
    }
    let q = &**query;
    if q.with.is_some() {
        return unsupported("WITH (a common table expression)");
    }
    if q.fetch.is_some()
        || !q.locks.is_empty()
        || q.for_clause.is_some()
        || q.settings.is_some()
        || q.format_clause.is_some()
        || !q.pipe_operators.is_empty()
    {
        return unsupported("FETCH, FOR, SETTINGS, FORMAT or a pipe operator");
    }
    let SetExpr::Select(select) = &*q.body else {
        return unsupported(format!("`{}` (set operations, VALUES, nested queries)", q.body));
    };
    let s = &**select;
    if s.top.is_some()
        || s.into.is_some()
        || !s.lateral_views.is_empty()
        || s.prewhere.is_some()
        || !s.connect_by.is_empty()
        || !s.cluster_by.is_empty()
        || !s.distribute_by.is_empty()
        || !s.sort_by.is_empty()
        || !s.named_window.is_empty()
        || s.qualify.is_some()
        || s.value_table_mode.is_some()
        || s.exclude.is_some()
        || matches!(s.distinct, Some(sqlparser::ast::Distinct::On(_)))
    {
        return unsupported(
            "this SELECT clause (DISTINCT ON, TOP, INTO, LATERAL VIEW, PREWHERE, CONNECT BY, QUALIFY, WINDOW, …)",
        );
    }

    // FROM: datasets, with their aliases.
    let mut checker = Checker { aliases: BTreeMap::new(), datasets: BTreeMap::new(), inputs: Vec::new() };
    let mut rules: BTreeMap<String, DatasetRules> = BTreeMap::new();
    let [from] = s.from.as_slice() else {
        return if s.from.is_empty() {
            refuse("InvalidSql", "the query reads no dataset (no FROM)")
        } else {
            unsupported("a comma-separated FROM (a cross join): join with JOIN … ON")
        };
    };
    let mut relations = vec![&from.relation];
    let mut conditions = Vec::new();
    for j in &from.joins {
        let Some(on) = on_condition(&j.join_operator) else {
            return unsupported("this join (only [INNER|LEFT|RIGHT|FULL] JOIN … ON)");
        };
        relations.push(&j.relation);
        conditions.push(on);
    }
    for r in relations {
        let TableFactor::Table { name, alias, args: None, with_hints, version: None, partitions, sample: None, .. } = r
        else {
            return unsupported(format!("`{r}` in FROM (only dataset names, optionally aliased)"));
        };
        if !with_hints.is_empty() || !partitions.is_empty() {
            return unsupported(format!("hints or partitions on `{name}`"));
        }
        let dataset = object_name(name)?;
        if let Some(other) = checker.inputs.iter().find(|i| i.eq_ignore_ascii_case(&dataset) && **i != dataset) {
            return refuse(
                "InvalidSql",
                format!(
                    "`{dataset}` and `{other}` are one table to the clean room (names match without regard to case)"
                ),
            );
        }
        let Some(d) = rules.get(&dataset).cloned().or_else(|| datasets(&dataset)) else {
            return refuse("UnknownDataset", format!("no dataset `{dataset}` is registered for this contract"));
        };
        // Aliases and names match without regard to case, as the engine folds them.
        let key = match alias {
            Some(a) if !a.columns.is_empty() => return unsupported("column aliases on a dataset"),
            Some(a) => a.name.value.to_ascii_lowercase(),
            None => dataset.to_ascii_lowercase(),
        };
        if checker.aliases.insert(key.clone(), dataset.clone()).is_some() {
            return refuse("InvalidSql", format!("`{key}` names two inputs: give each an alias of its own"));
        }
        if !checker.inputs.contains(&dataset) {
            checker.inputs.push(dataset.clone());
        }
        rules.insert(dataset, d);
    }
    checker.datasets = rules.iter().map(|(k, v)| (k.clone(), v)).collect();
    let checker = checker;
    for on in conditions {
        checker.on(on)?;
    }

    // WHERE, GROUP BY.
    if let Some(w) = &s.selection {
        checker.expr(w, Place::Filter)?;
    }
    let group_by: Vec<&Expr> = match &s.group_by {
        GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => exprs.iter().collect(),
        _ => return unsupported("GROUP BY ALL, ROLLUP, CUBE or GROUPING SETS"),
    };
    for g in &group_by {
        if checker.expr(g, Place::Output)? {
            return unsupported("an aggregate in GROUP BY");
        }
    }
    let grouped: Vec<String> = group_by.iter().map(|g| g.to_string().to_ascii_lowercase()).collect();

    // SELECT.
    let mut outputs = Vec::new();
    let mut plain = Vec::new();
    let mut any_aggregate = false;
    let mut group_size_column = None;
    for item in &s.projection {
        let (expr, name) = match item {
            SelectItem::UnnamedExpr(e) => {
                let name = match e {
                    Expr::Identifier(i) => i.value.clone(),
                    Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.clone()).unwrap_or_default(),
                    e => e.to_string(),
                };
                (e, name)
            }
            SelectItem::ExprWithAlias { expr, alias } => (expr, alias.value.clone()),
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                return refuse(
                    "UnsupportedSql",
                    "`*` is not allowed: name the columns (a wildcard would output every column, whatever its rules)",
                );
            }
            other => return unsupported(format!("the output item `{other}`")),
        };
        let aggregated = checker.expr(expr, Place::Output)?;
        any_aggregate |= aggregated;
        if !aggregated {
            plain.push((expr, name.clone()));
        }
        if is_count_star(expr) && group_size_column.is_none() {
            group_size_column = Some(name.clone());
        }
        if outputs.iter().any(|o: &String| o.eq_ignore_ascii_case(&name)) {
            return refuse(
                "InvalidSql",
                format!(
                    "two outputs are named `{name}` (names match without regard to case): give each an alias of its own"
                ),
            );
        }
        outputs.push(name);
    }
    if let Some(h) = &s.having {
        checker.expr(h, Place::Output)?;
    }
    if let Some(o) = &q.order_by {
        let OrderByKind::Expressions(list) = &o.kind else { return unsupported("ORDER BY ALL") };
        for e in list {
            // An output's name refers to what SELECT already checked. If it is also an input's
            // column, that column must be allowed in the output too: whichever the engine picks,
            // nothing passes that the rules forbid.
            if let Expr::Identifier(i) = &e.expr
                && outputs.iter().any(|o| o.eq_ignore_ascii_case(&i.value))
            {
                match checker.column(std::slice::from_ref(&i.value)) {
                    Err(r) if r.code == "UnknownColumn" => continue,
                    _ => {}
                }
            }
            checker.expr(&e.expr, Place::Output)?;
        }
    }
    if let Some(l) = &q.limit_clause {
        let text = l.to_string();
        if !text.split_whitespace().all(|w| {
            w.eq_ignore_ascii_case("limit") || w.eq_ignore_ascii_case("offset") || w.chars().all(|c| c.is_ascii_digit())
        }) {
            return unsupported(format!("`{}` (LIMIT and OFFSET take numbers)", text.trim()));
        }
    }

    // Aggregate-only datasets: every output aggregated or grouped, and the group size output.
    let strict: Vec<(&String, &DatasetRules)> = rules.iter().filter(|(_, r)| r.aggregate_only).collect();
    let min_group_size = strict.iter().map(|(_, r)| r.min_group_size).max().unwrap_or(0);
    if let Some((name, r)) = strict.first() {
        if !any_aggregate && group_by.is_empty() {
            return refuse(
                "AggregationRequired",
                format!(
                    "the query returns non-aggregated rows from aggregate-only dataset `{name}`: aggregate (COUNT, SUM, …) \
                     with GROUP BY"
                ),
            );
        }
        if let Some((e, _)) = plain.iter().find(|(e, _)| !grouped.contains(&e.to_string().to_ascii_lowercase())) {
            return refuse(
                "AggregationRequired",
                format!("`{e}` is neither aggregated nor in GROUP BY, and dataset `{name}` is aggregate-only"),
            );
        }
        if group_size_column.is_none() {
            return refuse(
                "GroupSizeRequired",
                format!(
                    "a query over aggregate-only dataset `{name}` must output COUNT(*), the group size: the clean room \
                     drops every group smaller than {} (the largest minimum of its inputs; `{name}` asks {})",
                    min_group_size, r.min_group_size
                ),
            );
        }
    } else {
        group_size_column = None;
    }
    Ok(Analysis {
        inputs: checker.inputs.clone(),
        canonical_sql: canonical,
        outputs,
        group_size_column,
        min_group_size,
    })
}

fn is_count_star(e: &Expr) -> bool {
    let Expr::Function(f) = e else { return false };
    let FunctionArguments::List(l) = &f.args else { return false };
    object_name(&f.name).is_ok_and(|n| n.eq_ignore_ascii_case("count"))
        && l.duplicate_treatment.is_none()
        && matches!(l.args.as_slice(), [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn col(name: &str, output: bool, aggregate: bool, join: bool) -> Column {
        Column { name: name.into(), kind: "int".into(), output, aggregate, join }
    }

    /// `sales` (a provider's, aggregate-only, groups of 10) and `customers` (another's).
    fn lookup(name: &str) -> Option<DatasetRules> {
        match name {
            "sales" => Some(DatasetRules {
                columns: vec![
                    col("customer_id", false, false, true),
                    col("region", true, true, false),
                    col("amount", false, true, false),
                    col("card_number", false, false, false),
                ],
                aggregate_only: true,
                min_group_size: 10,
            }),
            "customers" => Some(DatasetRules {
                columns: vec![
                    col("id", false, true, true),
                    col("segment", true, true, false),
                    col("email", false, false, false),
                    col("region", true, true, false),
                ],
                aggregate_only: false,
                min_group_size: 3,
            }),
            _ => None,
        }
    }

    fn check(sql: &str) -> Result<Analysis, Refusal> {
        analyze(sql, &lookup)
    }

    fn refused(sql: &str) -> (String, String) {
        let r = check(sql).unwrap_err();
        (r.code.to_string(), r.message)
    }

    #[test]
    fn a_compliant_join_with_aggregates_passes() {
        let a = check(
            "SELECT c.segment, COUNT(*) AS n, SUM(s.amount) AS total FROM sales s JOIN customers c \
             ON s.customer_id = c.id WHERE c.segment <> 'test' GROUP BY c.segment HAVING COUNT(*) > 1 ORDER BY total DESC LIMIT 100",
        )
        .unwrap();
        assert_eq!(a.inputs, ["sales", "customers"]);
        assert_eq!(a.outputs, ["segment", "n", "total"]);
        assert_eq!(a.group_size_column.as_deref(), Some("n"));
        assert_eq!(a.min_group_size, 10, "the strictest rule wins");
        assert!(a.canonical_sql.starts_with("SELECT c.segment, COUNT(*) AS n"), "{}", a.canonical_sql);
        // Checking the canonical form again gives the same analysis.
        assert_eq!(check(&a.canonical_sql).unwrap(), a);
    }

    #[test]
    fn a_disallowed_output_column_is_named() {
        let (code, msg) = refused("SELECT c.email, COUNT(*) FROM customers c GROUP BY c.email");
        assert_eq!(code, "ColumnNotAllowedInOutput");
        assert!(msg.contains("`customers.email`") && msg.contains("output: false"), "{msg}");
        // Aliases do not launder it.
        let (code, _) = refused("SELECT x.email AS e FROM customers x");
        assert_eq!(code, "ColumnNotAllowedInOutput");
        // Nor expressions, CASE, CAST or functions around it.
        for sql in [
            "SELECT LOWER(email) FROM customers",
            "SELECT CASE WHEN segment = 'a' THEN email END FROM customers",
            "SELECT CAST(email AS TEXT) FROM customers",
            "SELECT segment FROM customers ORDER BY email",
            "SELECT segment FROM customers WHERE email LIKE '%@contoso.com'",
        ] {
            assert_eq!(refused(sql).0, "ColumnNotAllowedInOutput", "{sql}");
        }
    }

    #[test]
    fn joins_only_on_join_columns() {
        let (code, msg) = refused(
            "SELECT c.segment, COUNT(*) FROM sales s JOIN customers c ON s.region = c.region GROUP BY c.segment",
        );
        assert_eq!(code, "ColumnNotJoinable");
        assert!(msg.contains("`sales.region` is not a join column") && msg.contains("join: false"), "{msg}");
        for sql in [
            "SELECT c.segment, COUNT(*) FROM sales s JOIN customers c ON s.customer_id > c.id GROUP BY c.segment",
            "SELECT c.segment, COUNT(*) FROM sales s JOIN customers c USING (region) GROUP BY c.segment",
            "SELECT c.segment, COUNT(*) FROM sales s NATURAL JOIN customers c GROUP BY c.segment",
            "SELECT c.segment, COUNT(*) FROM sales s CROSS JOIN customers c GROUP BY c.segment",
            "SELECT c.segment, COUNT(*) FROM sales s, customers c GROUP BY c.segment",
        ] {
            assert_eq!(refused(sql).0, "UnsupportedSql", "{sql}");
        }
    }

    #[test]
    fn aggregate_only_datasets_must_be_aggregated_with_their_group_size() {
        let (code, msg) = refused("SELECT region FROM sales");
        assert_eq!(code, "AggregationRequired");
        assert!(msg.contains("non-aggregated rows from aggregate-only dataset `sales`"), "{msg}");
        let (code, msg) = refused("SELECT region, SUM(amount) FROM sales");
        assert_eq!(code, "AggregationRequired", "{msg}");
        let (code, msg) = refused("SELECT region, SUM(amount) FROM sales GROUP BY region");
        assert_eq!(code, "GroupSizeRequired");
        assert!(msg.contains("COUNT(*)") && msg.contains("smaller than 10"), "{msg}");
        let a = check("SELECT region, SUM(amount), COUNT(*) FROM sales GROUP BY region").unwrap();
        assert_eq!(a.group_size_column.as_deref(), Some("COUNT(*)"));
        // A dataset that is not aggregate-only may be read row by row (its output columns).
        let a = check("SELECT segment FROM customers WHERE region = 'EU'").unwrap();
        assert_eq!((a.group_size_column, a.min_group_size), (None, 0));
    }

    #[test]
    fn aggregating_a_column_needs_its_aggregate_rule() {
        let (code, msg) = refused("SELECT region, COUNT(*), MAX(card_number) FROM sales GROUP BY region");
        assert_eq!(code, "ColumnNotAggregatable");
        assert!(msg.contains("`sales.card_number` may not be aggregated"), "{msg}");
    }

    #[test]
    fn what_the_checker_does_not_understand_is_refused() {
        for sql in [
            "SELECT * FROM customers",
            "SELECT c.* FROM customers c",
            "SELECT COUNT(*) FROM (SELECT * FROM sales) t",
            "WITH t AS (SELECT 1) SELECT segment FROM customers",
            "SELECT segment FROM customers UNION SELECT region FROM sales",
            "SELECT segment FROM customers WHERE id IN (SELECT customer_id FROM sales)",
            "SELECT segment, ROW_NUMBER() OVER () FROM customers",
            "SELECT segment, SUM(SUM(id)) FROM customers GROUP BY segment",
            "SELECT segment, md5(email) FROM customers",
            "SELECT segment FROM customers WHERE EXISTS (SELECT 1 FROM sales)",
            "SELECT segment FROM other.customers",
            "SELECT segment FROM customers LIMIT (SELECT 1)",
            "SELECT segment FROM customers GROUP BY ROLLUP (segment)",
        ] {
            let r = check(sql).unwrap_err();
            assert!(matches!(r.code, "UnsupportedSql" | "InvalidSql"), "{sql}: {r:?}");
        }
        for sql in ["DELETE FROM sales", "SELECT 1; SELECT 2", "SELEC segment", "DROP TABLE sales", ""] {
            assert_eq!(check(sql).unwrap_err().code, "InvalidSql", "{sql}");
        }
        assert_eq!(refused("SELECT x FROM unknown").0, "UnknownDataset");
        assert_eq!(refused("SELECT nothing FROM customers").0, "UnknownColumn");
        assert_eq!(refused("SELECT z.segment FROM customers c").0, "UnknownColumn");
        assert_eq!(
            refused("SELECT region, COUNT(*) FROM sales s JOIN customers c ON s.customer_id = c.id GROUP BY region").0,
            "AmbiguousColumn"
        );
    }

    #[test]
    fn what_is_checked_is_the_canonical_text() {
        // Found by the analytics_sql fuzz target: a literal with an escaped quote, a NUL and a
        // newline whose rendering did not analyse like the original.
        let found = "SELECT CASE WHEN segment = 'axxxxxxxxx$SELE$xxxxxxxxxxxxxxxxxxxxxxxWH\u{f1}\u{7cd} EL>@>>>''''''''xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\u{0}\u{a}xxxx0' THEN 1 ELSE 0 END, COUNT(*) FROM customers GROUP BY segment";
        if let Ok(a) = check(found) {
            assert_eq!(check(&a.canonical_sql).unwrap(), a, "the canonical form analyses the same");
        }
        let a = check("select  segment ,count(*) from customers group by segment").unwrap();
        assert_eq!(a.canonical_sql, "SELECT segment, count(*) FROM customers GROUP BY segment");
        assert_eq!(check(&a.canonical_sql).unwrap(), a);
    }

    #[test]
    fn hostile_texts_are_refused_without_harm() {
        let deep = format!("SELECT segment FROM customers WHERE {}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert_eq!(check(&deep).unwrap_err().code, "InvalidSql");
        let long = format!("SELECT segment FROM customers WHERE segment = '{}'", "a".repeat(MAX_SQL));
        assert_eq!(check(&long).unwrap_err().code, "InvalidSql");
        // Quoting does not hide a column: quoted names are refused outright.
        assert_eq!(refused("SELECT \"email\" FROM customers").0, "UnsupportedSql");
        assert_eq!(refused("SELECT EMAIL FROM customers").0, "ColumnNotAllowedInOutput");
    }

    /// The attacks of the issue-16 review: names the engine (DataFusion: unquoted names folded to
    /// lower case, quoted ones kept) would read otherwise than the checker.
    #[test]
    fn names_the_engine_would_read_otherwise_are_refused() {
        // A quoted alias `"S"` beside `s`: the checker would see two inputs, the engine one.
        let (code, msg) = refused(
            "SELECT S.segment, COUNT(*) AS n FROM customers AS \"S\" JOIN sales AS s ON \"S\".id = s.customer_id GROUP BY S.segment",
        );
        assert_eq!(code, "UnsupportedSql", "{msg}");
        assert!(msg.contains("quoted identifier"), "{msg}");
        // Unquoted aliases differing only in case name one input twice.
        let (code, msg) = refused("SELECT C.segment FROM customers AS C JOIN customers AS c ON C.id = c.id");
        assert_eq!(code, "InvalidSql", "{msg}");
        // An upper-case qualifier resolves to the same alias.
        assert!(check("SELECT C.segment FROM customers AS c").is_ok());
        // A quoted output name (to pass as the group size column, or as an ORDER BY name).
        assert_eq!(
            refused("SELECT region, COUNT(*) + 1000 AS \"N\", COUNT(*) AS n FROM sales GROUP BY region").0,
            "UnsupportedSql"
        );
        // Two outputs named alike.
        let (code, msg) = refused("SELECT region, COUNT(*) + 1000 AS N, COUNT(*) AS n FROM sales GROUP BY region");
        assert_eq!(code, "InvalidSql", "{msg}");
        assert!(msg.contains("two outputs are named `n`"), "{msg}");
        // ORDER BY a name that is an output and a forbidden column: checked as the column too.
        let (code, msg) = refused("SELECT segment AS email FROM customers ORDER BY email LIMIT 1");
        assert_eq!(code, "ColumnNotAllowedInOutput", "{msg}");
        assert!(check("SELECT segment AS s FROM customers ORDER BY s").is_ok());
        // Two registered names folding alike are one table to the engine.
        let both = |name: &str| match name {
            "SALES" => lookup("customers"),
            n => lookup(n),
        };
        let r = analyze("SELECT a.segment, COUNT(*) AS n FROM SALES AS a JOIN sales AS b ON a.id = b.customer_id GROUP BY a.segment", &both)
            .unwrap_err();
        assert_eq!(r.code, "InvalidSql", "{r:?}");
        assert!(r.message.contains("one table to the clean room"), "{r:?}");
        // DISTINCT ON reaches columns the SELECT list does not name.
        let (code, msg) = refused("SELECT DISTINCT ON (email) segment FROM customers");
        assert_eq!(code, "UnsupportedSql", "{msg}");
        assert!(check("SELECT DISTINCT segment FROM customers").is_ok());
    }
}
