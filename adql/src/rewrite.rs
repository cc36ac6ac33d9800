//! A checked ADQL query ([`crate::parse`]) → SQL for DataFusion.
//!
//! Where ADQL and DataFusion's SQL differ the AST is rewritten: `TOP n` becomes `LIMIT n`
//! (ADQL 2.1 §2.2.1: `OFFSET` applies before `TOP`, which is what `LIMIT n OFFSET m` means);
//! the math functions whose names or meanings differ are
//! renamed (`LOG` is the natural logarithm); and each geometry predicate or measure becomes a
//! UDF of [`crate::geometry`] on numbers, its shapes flattened and coordinate-system strings
//! dropped (accepted and ignored, as ADQL 2.1 §4.2.1 allows). Geometry values themselves
//! (`POINT(…)` in a select list, geometry-typed columns) are not supported yet: the error
//! says so before planning.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_expressions, visit_expressions_mut, BinaryOperator, CastKind, DataType, ExactNumberInfo,
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
    LimitClause, ObjectName, ObjectNamePart, Query, SetExpr, TopQuantity, Value, VisitMut,
    VisitorMut,
};

use crate::geometry;
use crate::{parse, Error, Result};

/// Parses one ADQL query and returns it rewritten for DataFusion.
pub fn to_datafusion_sql(adql: &str) -> Result<String> {
    parse::with_deep_stack(|| rewrite(adql))
}

fn rewrite(adql: &str) -> Result<String> {
    let mut statement = parse::parse(adql)?;
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
    // A geometry constructor left after the rewrite is a geometry value: say so before planning.
    let mut leftover = None;
    let _ = visit_expressions(&statement, |expr| match constructor_name(expr) {
        Some(name) => {
            leftover = Some(name);
            ControlFlow::Break(())
        }
        None => ControlFlow::Continue(()),
    });
    match leftover {
        Some(name) => Err(Error::Unsupported(format!(
            "{name}(…) as a value is not supported yet: use it inside CONTAINS, INTERSECTS, \
             DISTANCE, AREA, COORD1 or COORD2"
        ))),
        None => Ok(statement.to_string()),
    }
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

/// `SELECT TOP n` → `LIMIT n` for one query. In a set operation the first SELECT's TOP
/// limits the whole result, as in ADQL services (an operand is a query of its own, with its
/// own TOP, only when parenthesised).
fn top_to_limit(query: &mut Query) -> Result<()> {
    let mut body = query.body.as_mut();
    while let SetExpr::SetOperation { left, right, .. } = body {
        if matches!(right.as_ref(), SetExpr::Select(s) if s.top.is_some()) {
            return Err(Error::Syntax(
                "TOP belongs in the first SELECT of UNION/INTERSECT/EXCEPT (or parenthesise)"
                    .into(),
            ));
        }
        body = left.as_mut();
    }
    let SetExpr::Select(select) = body else {
        return Ok(());
    };
    let Some(top) = select.top.take() else {
        return Ok(());
    };
    let n = match top.quantity {
        // More rows than any table holds: DataFusion's limits are signed 64-bit.
        Some(TopQuantity::Constant(n)) => {
            Expr::value(Value::Number(n.min(i64::MAX as u64).to_string(), false))
        }
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

/// A geometry as its ADQL constructor gave it (coordinate expressions, in degrees); built
/// once per geometry call while rewriting, so its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Shape {
    Point(Expr, Expr),
    Circle(Expr, Expr, Expr),
    Box(Vec<Expr>),
    Polygon(Vec<Expr>),
}

impl Shape {
    /// The shape an ADQL geometry expression builds.
    fn of(e: &Expr) -> Result<Shape> {
        let unsupported = || {
            Error::Unsupported(format!(
                "{e}: only POINT, CIRCLE, BOX, POLYGON and CENTROID(…) are supported as \
                 geometries (no geometry-typed columns yet)"
            ))
        };
        let Expr::Function(f) = e else {
            return match e {
                Expr::Nested(inner) => Shape::of(inner),
                _ => Err(unsupported()),
            };
        };
        let name = f.name.to_string().to_ascii_uppercase();
        let args = coordinates(&f.args, &name)?;
        let point_first = |n: usize| args.len() == n && is_point_call(&args[0]);
        Ok(match name.as_str() {
            "POINT" => match <[Expr; 2]>::try_from(args) {
                Ok([a, d]) => Shape::Point(a, d),
                Err(_) => return Err(arity("POINT", "two coordinates")),
            },
            "CENTROID" => {
                let [g] =
                    <[Expr; 1]>::try_from(args).map_err(|_| arity("CENTROID", "one geometry"))?;
                let flat = Shape::of(&g)?.flatten();
                Shape::Point(
                    call(geometry::CENTROID_RA, flat.clone()),
                    call(geometry::CENTROID_DEC, flat),
                )
            }
            "CIRCLE" if point_first(2) => {
                let (a, d) = Shape::of(&args[0])?.point()?;
                Shape::Circle(a, d, args[1].clone())
            }
            "CIRCLE" => match <[Expr; 3]>::try_from(args) {
                Ok([a, d, r]) => Shape::Circle(a, d, r),
                Err(_) => return Err(arity("CIRCLE", "a centre and a radius")),
            },
            "BOX" if point_first(3) => {
                let (a, d) = Shape::of(&args[0])?.point()?;
                Shape::Box(vec![a, d, args[1].clone(), args[2].clone()])
            }
            "BOX" if args.len() == 4 => Shape::Box(args),
            "BOX" => return Err(arity("BOX", "a centre, a width and a height")),
            "POLYGON" if !args.is_empty() && args.iter().all(is_point_call) => {
                let mut coords = Vec::new();
                for p in &args {
                    let (a, d) = Shape::of(p)?.point()?;
                    coords.extend([a, d]);
                }
                Shape::polygon(coords)?
            }
            "POLYGON" => Shape::polygon(args)?,
            _ => return Err(unsupported()),
        })
    }

    fn polygon(coords: Vec<Expr>) -> Result<Shape> {
        if coords.len() < 6 || !coords.len().is_multiple_of(2) {
            return Err(arity("POLYGON", "three vertices or more"));
        }
        Ok(Shape::Polygon(coords))
    }

    fn point(self) -> Result<(Expr, Expr)> {
        match self {
            Shape::Point(a, d) => Ok((a, d)),
            _ => Err(Error::Syntax("expected a POINT".into())),
        }
    }

    /// The numbers [`geometry::Shape::decode`] reads.
    fn flatten(self) -> Vec<Expr> {
        let number = |x: f64| Expr::value(Value::Number(format!("{x:.1}"), false));
        match self {
            Shape::Point(a, d) => vec![number(geometry::POINT_CODE), a, d],
            Shape::Circle(a, d, r) => vec![number(geometry::CIRCLE_CODE), a, d, r],
            Shape::Box(b) => std::iter::once(number(geometry::BOX_CODE))
                .chain(b)
                .collect(),
            Shape::Polygon(v) => {
                let n = Expr::value(Value::Number((v.len() / 2).to_string(), false));
                [number(geometry::POLYGON_CODE), n]
                    .into_iter()
                    .chain(v)
                    .collect()
            }
        }
    }
}

/// Rewrites one function call in place where ADQL and DataFusion differ (the visitor reaches
/// nested calls itself, innermost first): geometry, and the math functions whose names or
/// meanings differ (ADQL 2.1 §2.3: `LOG` is the natural logarithm, DataFusion's `log` is base
/// 10).
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
        // The source unit comes from the value's field metadata (see crate::units).
        "IN_UNIT" => renamed(crate::units::IN_UNIT, plain_args(&f.args, "IN_UNIT")?),
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
                    let (a1, d1) = Shape::of(p1)?.point()?;
                    let (a2, d2) = Shape::of(p2)?.point()?;
                    call(geometry::DISTANCE, vec![a1, d1, a2, d2])
                }
                [_, _, _, _] => call(geometry::DISTANCE, args),
                _ => return Err(arity("DISTANCE", "two POINTs or four numbers")),
            }
        }
        "CONTAINS" | "INTERSECTS" => {
            let [a, b] = <[Expr; 2]>::try_from(coordinates(&f.args, &name)?)
                .map_err(|_| arity(&name, "two geometries"))?;
            let (a, b) = (Shape::of(&a)?, Shape::of(&b)?);
            // INTERSECTS with a POINT is CONTAINS (ADQL 2.1 §4.2.10), either way round.
            let (a, b, contains) = match (name.as_str(), &a, &b) {
                ("INTERSECTS", Shape::Point(..), _) | ("CONTAINS", _, _) => (a, b, true),
                ("INTERSECTS", _, Shape::Point(..)) => (b, a, true),
                _ => (a, b, false),
            };
            match (a, b, contains) {
                // Cone searches and cross-matches: the form the index and the join know.
                (Shape::Point(pa, pd), Shape::Circle(ca, cd, r), true) => {
                    call(geometry::CONTAINS_POINT_CIRCLE, vec![pa, pd, ca, cd, r])
                }
                (a, b, contains) => {
                    let udf = if contains {
                        geometry::CONTAINS
                    } else {
                        geometry::INTERSECTS
                    };
                    call(udf, a.flatten().into_iter().chain(b.flatten()).collect())
                }
            }
        }
        "AREA" => {
            let [g] = <[Expr; 1]>::try_from(coordinates(&f.args, "AREA")?)
                .map_err(|_| arity("AREA", "one geometry"))?;
            call(geometry::AREA, Shape::of(&g)?.flatten())
        }
        "COORD1" | "COORD2" => {
            let [p] = <[Expr; 1]>::try_from(coordinates(&f.args, &name)?)
                .map_err(|_| arity(&name, "one POINT"))?;
            let (a, d) = Shape::of(&p)?.point()?;
            Expr::Nested(Box::new(if name == "COORD1" { a } else { d }))
        }
        "COORDSYS" => {
            let [g] = <[Expr; 1]>::try_from(plain_args(&f.args, "COORDSYS")?)
                .map_err(|_| arity("COORDSYS", "one geometry"))?;
            Shape::of(&g)?; // a geometry it must be
            let given = match &g {
                Expr::Function(g) => {
                    plain_args(&g.args, "COORDSYS")?
                        .into_iter()
                        .find_map(|a| match a {
                            Expr::Value(v) => match v.value {
                                Value::SingleQuotedString(s) if !s.trim().is_empty() => Some(s),
                                _ => None,
                            },
                            _ => None,
                        })
                }
                _ => None,
            };
            // Every table insitu serves is in ICRS.
            Expr::value(Value::SingleQuotedString(
                given.unwrap_or_else(|| "ICRS".into()),
            ))
        }
        "REGION" => {
            return Err(Error::Unsupported(
                "REGION is not supported (optional in ADQL 2.1)".into(),
            ))
        }
        _ => return Ok(()),
    };
    *expr = rewritten;
    Ok(())
}

fn arity(name: &str, expected: &str) -> Error {
    Error::Syntax(format!("{name} takes {expected}"))
}

fn constructor_name(e: &Expr) -> Option<&'static str> {
    let Expr::Function(f) = e else { return None };
    let name = f.name.to_string().to_ascii_uppercase();
    ["POINT", "CIRCLE", "BOX", "POLYGON", "CENTROID"]
        .into_iter()
        .find(|n| *n == name)
}

fn is_point_call(e: &Expr) -> bool {
    matches!(constructor_name(e), Some("POINT" | "CENTROID"))
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
        let sql = to_datafusion_sql(
            "SELECT COORD1(CENTROID(BOX(1, 2, 3, 4))), AREA(POLYGON(POINT(0, 0), POINT(1, 0), POINT(0, 1))) FROM a",
        )
        .unwrap();
        assert!(
            sql.contains("adql_centroid_ra(CAST(3.0 AS DOUBLE)"),
            "{sql}"
        );
        assert!(
            sql.contains("adql_area(CAST(4.0 AS DOUBLE), CAST(3 AS DOUBLE)"),
            "{sql}"
        );
        let err = to_datafusion_sql("SELECT POINT(ra, dec) FROM a").unwrap_err();
        assert!(err.to_string().contains("not supported yet"), "{err}");
    }
}
