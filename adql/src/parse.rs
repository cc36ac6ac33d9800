//! ADQL 2.1 text → a checked, rewritten SQL query for DataFusion.
//!
//! Parsing uses sqlparser (the version DataFusion uses); then the AST is rewritten where ADQL
//! and DataFusion's SQL differ: `TOP n` becomes `LIMIT n` (ADQL 2.1 §2.2.1: `OFFSET` applies
//! before `TOP`, which is what `LIMIT n OFFSET m` means), and the geometry functions become
//! the UDFs of [`crate::geometry`], their coordinate-system strings dropped (accepted and
//! ignored, as ADQL 2.1 §4.2.1 allows).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_expressions, visit_expressions_mut, BinaryOperator, CastKind, DataType, ExactNumberInfo,
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
    LimitClause, ObjectName, ObjectNamePart, Query, SetExpr, Statement, TopQuantity, Value,
    VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};

use crate::geometry;
use crate::{Error, Result};

/// Checks that `adql` is one valid ADQL 2.1 query, without resolving tables or columns.
pub fn check(adql: &str) -> Result<()> {
    to_datafusion_sql(adql).map(|_| ())
}

/// Parses one ADQL query and returns it rewritten for DataFusion. Anything but a single
/// `SELECT` (DDL, DML, several statements) is refused before planning.
pub fn to_datafusion_sql(adql: &str) -> Result<String> {
    let mut statements = Parser::parse_sql(&GenericDialect {}, adql).map_err(syntax_error)?;
    let mut statement = match statements.len() {
        1 => statements.remove(0),
        0 => return Err(Error::Syntax("the query is empty".into())),
        n => {
            return Err(Error::Unsupported(format!(
                "one query at a time: found {n} statements"
            )))
        }
    };
    if !matches!(statement, Statement::Query(_)) {
        return Err(Error::Unsupported(
            "only SELECT queries are allowed (no DDL, DML or commands)".into(),
        ));
    }
    // TOP → LIMIT in the outer query and in every sub-query, derived table and CTE.
    if let ControlFlow::Break(e) = statement.visit(&mut TopToLimit) {
        return Err(e);
    }
    let mut failure = None;
    let _ = visit_expressions_mut(&mut statement, |expr| match rewrite_function(expr) {
        Ok(()) => ControlFlow::Continue(()),
        Err(e) => {
            failure = Some(e);
            ControlFlow::Break(())
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    // Geometry left after the rewrite is a form not supported yet: say so before planning.
    let mut leftover = None;
    let _ = visit_expressions(&statement, |expr| match function_name(expr) {
        Some(name) => {
            leftover = Some(name);
            ControlFlow::Break(())
        }
        None => ControlFlow::Continue(()),
    });
    match leftover {
        Some(name) => Err(Error::Unsupported(format!(
            "{name} is only supported inside CONTAINS, INTERSECTS or DISTANCE for now"
        ))),
        None => Ok(statement.to_string()),
    }
}

fn syntax_error(e: ParserError) -> Error {
    // sqlparser's messages end with "at Line: L, Column: C", which is what users need.
    Error::Syntax(match e {
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m,
        ParserError::RecursionLimitExceeded => "the query is nested too deeply".into(),
    })
}

struct TopToLimit;

impl VisitorMut for TopToLimit {
    type Break = Error;

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<Error> {
        match top_to_limit(query) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    }
}

/// `SELECT TOP n` → `LIMIT n` for one query whose body is a SELECT (the operands of a set
/// operation are queries of their own only when parenthesised, as in SQL).
fn top_to_limit(query: &mut Query) -> Result<()> {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return Ok(());
    };
    let Some(top) = select.top.take() else {
        return Ok(());
    };
    if top.percent || top.with_ties {
        return Err(Error::Unsupported(
            "TOP n PERCENT / WITH TIES are not ADQL".into(),
        ));
    }
    let n = match top.quantity {
        Some(TopQuantity::Constant(n)) => Expr::value(Value::Number(n.to_string(), false)),
        Some(TopQuantity::Expr(e)) => e,
        None => return Err(Error::Syntax("TOP needs a number of rows".into())),
    };
    match &mut query.limit_clause {
        None => {
            query.limit_clause = Some(LimitClause::LimitOffset {
                limit: Some(n),
                offset: None,
                limit_by: vec![],
            })
        }
        Some(LimitClause::LimitOffset { limit, .. }) if limit.is_none() => *limit = Some(n),
        Some(_) => return Err(Error::Unsupported("give TOP or LIMIT, not both".into())),
    }
    Ok(())
}

/// Rewrites one function call in place where ADQL and DataFusion differ (the visitor reaches
/// nested calls itself): geometry, and the math functions whose names or meanings differ
/// (ADQL 2.1 §2.3: `LOG` is the natural logarithm, DataFusion's `log` is base 10).
fn rewrite_function(expr: &mut Expr) -> Result<()> {
    let Expr::Function(f) = expr else {
        return Ok(());
    };
    let name = f.name.to_string().to_ascii_uppercase();
    let rewritten = match name.as_str() {
        "LOG" => renamed("ln", plain_args(&f.args, "LOG")?),
        "CEILING" => renamed("ceil", plain_args(&f.args, "CEILING")?),
        "TRUNCATE" => renamed("trunc", plain_args(&f.args, "TRUNCATE")?),
        // ADQL's optional seed has no DataFusion counterpart: RAND(seed) is not repeatable.
        "RAND" => renamed("random", vec![]),
        "MOD" => match <[Expr; 2]>::try_from(plain_args(&f.args, "MOD")?) {
            Ok([a, b]) => Expr::Nested(Box::new(Expr::BinaryOp {
                left: Box::new(a),
                op: BinaryOperator::Modulo,
                right: Box::new(b),
            })),
            Err(_) => return Err(arity("MOD", "two numbers")),
        },
        "DISTANCE" => {
            let args = coordinates(&f.args, "DISTANCE")?;
            match args.as_slice() {
                [p1, p2] => {
                    let mut all = point_args(p1, "DISTANCE")?;
                    all.extend(point_args(p2, "DISTANCE")?);
                    call(geometry::DISTANCE, all)
                }
                [_, _, _, _] => call(geometry::DISTANCE, args),
                _ => return Err(arity("DISTANCE", "two POINTs or four numbers")),
            }
        }
        "CONTAINS" | "INTERSECTS" => {
            let args = coordinates(&f.args, &name)?;
            let [point, region] = args.as_slice() else {
                return Err(arity(&name, "two geometries"));
            };
            // INTERSECTS with a POINT is CONTAINS (ADQL 2.1 §4.2.10).
            let (point, region) = match (function_name(point), function_name(region)) {
                (Some("POINT"), _) => (point, region),
                (_, Some("POINT")) if name == "INTERSECTS" => (region, point),
                _ => {
                    return Err(Error::Unsupported(format!(
                        "{name} is supported for a POINT and a CIRCLE for now"
                    )))
                }
            };
            if function_name(region) != Some("CIRCLE") {
                return Err(Error::Unsupported(format!(
                    "{name} is supported for a POINT and a CIRCLE for now"
                )));
            }
            let mut all = point_args(point, &name)?;
            let circle = geometry_args(region, "CIRCLE")?;
            if circle.len() != 3 {
                return Err(arity("CIRCLE", "a centre and a radius"));
            }
            all.extend(circle);
            call(geometry::CONTAINS_POINT_CIRCLE, all)
        }
        "REGION" | "AREA" | "CENTROID" | "COORD1" | "COORD2" | "COORDSYS" => {
            return Err(Error::Unsupported(format!("{name} is not supported yet")))
        }
        _ => return Ok(()),
    };
    *expr = rewritten;
    Ok(())
}

fn arity(name: &str, expected: &str) -> Error {
    Error::Syntax(format!("{name} takes {expected}"))
}

fn function_name(e: &Expr) -> Option<&'static str> {
    let Expr::Function(f) = e else { return None };
    let name = f.name.to_string().to_ascii_uppercase();
    ["POINT", "CIRCLE", "BOX", "POLYGON"]
        .into_iter()
        .find(|n| *n == name)
}

/// The arguments of a call, all plain expressions.
fn plain_args(args: &FunctionArguments, name: &str) -> Result<Vec<Expr>> {
    let FunctionArguments::List(list) = args else {
        return Ok(vec![]);
    };
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e.clone()),
            _ => Err(Error::Syntax(format!("{name}: unexpected argument {a}"))),
        })
        .collect()
}

/// The arguments of a geometry call, with a leading coordinate-system string dropped.
fn coordinates(args: &FunctionArguments, name: &str) -> Result<Vec<Expr>> {
    let mut out = plain_args(args, name)?;
    if let Some(Expr::Value(v)) = out.first() {
        if matches!(v.value, Value::SingleQuotedString(_)) {
            out.remove(0);
        }
    }
    Ok(out)
}

fn geometry_args(e: &Expr, name: &str) -> Result<Vec<Expr>> {
    match e {
        Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case(name) => {
            coordinates(&f.args, name)
        }
        _ => Err(Error::Syntax(format!("expected {name}(...), found {e}"))),
    }
}

fn point_args(e: &Expr, caller: &str) -> Result<Vec<Expr>> {
    let args = geometry_args(e, "POINT").map_err(|_| arity(caller, "POINTs"))?;
    if args.len() != 2 {
        return Err(arity("POINT", "two coordinates"));
    }
    Ok(args)
}

/// `name(args...)` as a plain call.
fn renamed(name: &str, args: Vec<Expr>) -> Expr {
    function(
        name,
        args.into_iter()
            .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
            .collect(),
    )
}

/// `name(args...)` with every argument cast to DOUBLE, since catalogue columns come as
/// float32, integers or decimals and the UDFs take Float64.
fn call(name: &str, args: Vec<Expr>) -> Expr {
    let cast = |e: Expr| Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(e),
        data_type: DataType::Double(ExactNumberInfo::None),
        array: false,
        format: None,
    };
    function(
        name,
        args.into_iter()
            .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(cast(e))))
            .collect(),
    )
}

fn function(name: &str, args: Vec<FunctionArg>) -> Expr {
    Expr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args,
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_becomes_limit_and_offset_stays() {
        let sql = to_datafusion_sql("SELECT TOP 5 ra FROM cat ORDER BY ra OFFSET 2").unwrap();
        assert!(sql.contains("LIMIT 5") && sql.contains("OFFSET 2"), "{sql}");
        assert!(!sql.contains("TOP"), "{sql}");
    }

    #[test]
    fn geometry_is_rewritten_with_coordinate_systems_dropped() {
        let sql = to_datafusion_sql(
            "SELECT * FROM t WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS GEOCENTER', 10, 20, 0.5))",
        )
        .unwrap();
        assert!(
            sql.contains("adql_contains_point_circle(CAST(ra AS DOUBLE)"),
            "{sql}"
        );
        let sql = to_datafusion_sql("SELECT DISTANCE(POINT(a.ra, a.dec), POINT(1, 2)) AS d FROM a")
            .unwrap();
        assert!(sql.contains("adql_distance("), "{sql}");
        let sql = to_datafusion_sql("SELECT DISTANCE(ra, dec, 1, 2) FROM a").unwrap();
        assert!(sql.contains("adql_distance("), "{sql}");
    }

    #[test]
    fn refuses_anything_but_one_select() {
        for q in [
            "DROP TABLE t",
            "SELECT 1; SELECT 2",
            "INSERT INTO t VALUES (1)",
            "SELECT 1; DROP TABLE t",
            "",
        ] {
            assert!(to_datafusion_sql(q).is_err(), "{q}");
        }
        let err = to_datafusion_sql("SELECT ra FROM t\nWHERE ra > > 1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("Line: 2"), "{err}");
    }
}
