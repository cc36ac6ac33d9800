//! ADQL 2.1 text → one checked query AST.
//!
//! sqlparser (the version DataFusion uses) reads the text with its generic dialect, which
//! accepts much more than ADQL; this module then holds the result to ADQL 2.1: a token
//! allow-list first (no `;`, `::`, `==`, `%`, bitwise operators, backticks or placeholders),
//! then a walk over the AST that refuses what the ADQL grammar has no rule for (`LIMIT`,
//! `FETCH`, window functions, a missing `FROM`, reserved words as bare identifiers, casts to
//! non-ADQL types, …) and checks the geometry constructors' arity. Nothing here resolves
//! tables or columns: [`check`] is what `insitu query --parse-only` runs. Errors end with
//! "at Line: L, Column: C" where the position is known.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CastKind, CeilFloorKind, DataType, DateTimeField, Distinct, Expr, FunctionArg,
    FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, JoinConstraint, JoinOperator,
    ObjectName, ObjectNamePart, OrderByKind, Query, Select, SelectFlavor, SelectItem, SetExpr,
    SetOperator, SetQuantifier, Spanned, Statement, TableFactor, TopQuantity, UnaryOperator, Value,
    ValueWithSpan, Visit, Visitor, WildcardAdditionalOptions,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Span, Token, Tokenizer, Whitespace};

use crate::{Error, Result};

/// Checks that `adql` is one valid ADQL 2.1 query, strictly by the REC's grammar (none of
/// the extensions [`parse`] accepts), without resolving tables or columns.
pub fn check(adql: &str) -> Result<()> {
    with_deep_stack(|| parse_with(adql, &mut Grammar::new(true)).map(|_| ()))
}

/// Parses one query in the ADQL 2.1 that insitu runs: the REC's grammar plus three common
/// SQL forms the REC leaves out (searched and simple `CASE`, scalar sub-queries, `CROSS
/// JOIN`). Anything but a single query (DDL, DML, several statements) is refused.
pub fn parse(adql: &str) -> Result<Statement> {
    parse_with(adql, &mut Grammar::new(false))
}

/// Deepest expression tree accepted: `a OR b OR …` nests one level per operator, and the
/// planner and executor recurse once per level.
pub const MAX_EXPRESSION_DEPTH: usize = 200;

/// Longest query text accepted (a generated list of a few thousand conditions fits).
pub const MAX_QUERY_BYTES: usize = 1 << 20;

/// Runs `f` on a thread with a large stack: sqlparser's AST walks recurse once per operator
/// of a long `a OR b OR …` chain, deeper than a worker thread's stack allows.
pub fn with_deep_stack<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("adql-parse".into())
            .stack_size(256 << 20)
            .spawn_scoped(scope, f)
            .map_err(|e| Error::Execution(format!("cannot start the parser thread: {e}")))?
            .join()
            .unwrap_or_else(|_| Err(Error::Execution("the ADQL parser failed".into())))
    })
}

fn parse_with(adql: &str, grammar: &mut Grammar) -> Result<Statement> {
    if adql.len() > MAX_QUERY_BYTES {
        return Err(Error::Unsupported(format!(
            "the query is {} bytes long; the limit is {MAX_QUERY_BYTES} (upload long lists as a table)",
            adql.len()
        )));
    }
    check_tokens(adql, grammar.strict)?;
    let mut statements = Parser::parse_sql(&GenericDialect {}, adql).map_err(syntax_error)?;
    let statement = match statements.len() {
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
    if let ControlFlow::Break(e) = statement.visit(grammar) {
        return Err(e);
    }
    Ok(statement)
}

fn syntax_error(e: ParserError) -> Error {
    // sqlparser's messages end with "at Line: L, Column: C", which is what users need.
    Error::Syntax(match e {
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m,
        ParserError::RecursionLimitExceeded => "the query is nested too deeply".into(),
    })
}

fn at(location: Location) -> String {
    format!("at Line: {}, Column: {}", location.line, location.column)
}

/// Refuses tokens ADQL 2.1 has no use for, with a hint where there is an ADQL spelling.
fn check_tokens(adql: &str, strict: bool) -> Result<()> {
    let tokens = Tokenizer::new(&GenericDialect {}, adql)
        .tokenize_with_location()
        .map_err(|e| Error::Syntax(e.to_string()))?;
    for (i, t) in tokens.iter().enumerate() {
        let next = tokens[i + 1..]
            .iter()
            .map(|t| &t.token)
            .find(|t| !matches!(t, Token::Whitespace(_)));
        let refused = match &t.token {
            Token::Comma if closes_list(next) => Some("a trailing comma is not ADQL".into()),
            Token::Word(w) if w.quote_style == Some('"') && w.value.is_empty() => {
                Some("an empty delimited identifier is not ADQL".into())
            }
            Token::Word(w) => match w.quote_style {
                None if !regular_identifier(&w.value) => Some(format!(
                    "{:?} is not an ADQL identifier (quote it with \"…\")",
                    w.value
                )),
                None | Some('"') => None,
                Some(q) => Some(format!(
                    "{q}…{q} quoting is not ADQL: delimit identifiers with \"…\""
                )),
            },
            Token::Whitespace(Whitespace::MultiLineComment(_)) if strict => {
                Some("/* … */ comments are not ADQL: use -- comments".into())
            }
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::Comma
            | Token::Whitespace(_)
            | Token::Eq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::StringConcat
            | Token::LParen
            | Token::RParen
            | Token::Period
            | Token::EOF => None,
            // Hexadecimal literals left ADQL before 2.1 became a REC, with bitwise operators.
            Token::HexStringLiteral(_) => Some("hexadecimal literals are not ADQL 2.1".into()),
            Token::SemiColon => Some("';' is not ADQL: send one query, without ';'".into()),
            Token::DoubleEq => Some("'==' is not ADQL: compare with '='".into()),
            Token::DoubleColon => Some("'::' casts are not ADQL: use CAST(x AS type)".into()),
            Token::Mod => Some("'%' is not ADQL: use MOD(a, b)".into()),
            Token::Ampersand
            | Token::Pipe
            | Token::Caret
            | Token::Tilde
            | Token::ShiftLeft
            | Token::ShiftRight
            | Token::ExclamationMark => {
                Some(format!("'{}': ADQL 2.1 has no bitwise operators", t.token))
            }
            Token::Placeholder(p) => Some(format!("parameter {p} is not ADQL")),
            other => Some(format!("'{other}' is not ADQL")),
        };
        if let Some(reason) = refused {
            return Err(Error::Syntax(format!("{reason} {}", at(t.span.start))));
        }
    }
    Ok(())
}

/// Whether a token after a comma ends the list it is in (`)`, `FROM`, the end).
fn closes_list(next: Option<&Token>) -> bool {
    match next {
        None | Some(Token::RParen | Token::EOF) => true,
        Some(Token::Word(w)) => w.quote_style.is_none() && w.value.eq_ignore_ascii_case("FROM"),
        _ => false,
    }
}

/// ADQL 2.1 §2.1.3: a Latin letter, then letters, digits or underscores.
fn regular_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The walk that holds sqlparser's generic AST to the ADQL 2.1 grammar; `strict` refuses the
/// extensions too.
struct Grammar {
    strict: bool,
    /// How deep in nested queries the walk is (1 = the statement's own query).
    depth: usize,
    /// How deep in nested expressions the walk is.
    expression_depth: usize,
}

fn refuse(what: impl std::fmt::Display, node: &impl Spanned) -> ControlFlow<Error> {
    refuse_at(what, node.span())
}

fn refuse_at(what: impl std::fmt::Display, span: Span) -> ControlFlow<Error> {
    let location = if span.start.line > 0 {
        format!(" {}", at(span.start))
    } else {
        String::new()
    };
    ControlFlow::Break(Error::Syntax(format!("{what}{location}")))
}

/// An unquoted identifier that is an SQL or ADQL reserved word.
fn reserved_identifier(ident: &Ident) -> ControlFlow<Error> {
    if ident.quote_style.is_none() && is_reserved(&ident.value) {
        return refuse_at(
            format!(
                "{} is a reserved word: write \"{}\" to use it as a name",
                ident.value.to_ascii_uppercase(),
                ident.value
            ),
            ident.span,
        );
    }
    ControlFlow::Continue(())
}

fn object_name(name: &ObjectName) -> ControlFlow<Error> {
    for part in &name.0 {
        match part {
            ObjectNamePart::Identifier(i) => reserved_identifier(i)?,
            other => return refuse("not an ADQL name", other),
        }
    }
    if name.0.len() > 3 {
        return refuse("a table name has at most catalog.schema.table", name);
    }
    ControlFlow::Continue(())
}

impl Grammar {
    fn new(strict: bool) -> Grammar {
        Grammar {
            strict,
            depth: 0,
            expression_depth: 0,
        }
    }
}

impl Visitor for Grammar {
    type Break = Error;

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<Error> {
        self.expression_depth -= 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<Error> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Error> {
        use datafusion::sql::sqlparser::ast::{LimitClause, Offset, OffsetRows};
        self.depth += 1;
        match &query.limit_clause {
            None => {}
            Some(LimitClause::LimitOffset {
                limit: None,
                limit_by,
                offset,
            }) if limit_by.is_empty() => match offset {
                None => {}
                Some(Offset {
                    value: Expr::Value(v),
                    rows: OffsetRows::None,
                }) if unsigned_integer(&v.value) => {}
                Some(o) => return refuse("OFFSET takes an unsigned integer", o),
            },
            Some(_) => return refuse("LIMIT is not ADQL: use SELECT TOP n", query),
        }
        if query.fetch.is_some() {
            return refuse("FETCH is not ADQL: use SELECT TOP n", query);
        }
        if !query.locks.is_empty()
            || query.for_clause.is_some()
            || query.settings.is_some()
            || query.format_clause.is_some()
            || !query.pipe_operators.is_empty()
        {
            return refuse("this clause is not ADQL", query);
        }
        if let Some(with) = &query.with {
            if self.strict && self.depth > 1 {
                return refuse("ADQL allows WITH only before the outermost query", with);
            }
            if with.recursive {
                return refuse("WITH RECURSIVE is not ADQL", with);
            }
            for cte in &with.cte_tables {
                reserved_identifier(&cte.alias.name)?;
                if cte.materialized.is_some() || cte.from.is_some() || !cte.alias.columns.is_empty()
                {
                    return refuse("this WITH form is not ADQL", cte);
                }
            }
        }
        if let Some(order_by) = &query.order_by {
            match &order_by.kind {
                OrderByKind::All(_) => return refuse("ORDER BY ALL is not ADQL", order_by),
                OrderByKind::Expressions(exprs) => {
                    for e in exprs {
                        if e.options.nulls_first.is_some() || e.with_fill.is_some() {
                            return refuse("NULLS FIRST/LAST is not ADQL", e);
                        }
                    }
                }
            }
            if order_by.interpolate.is_some() {
                return refuse("INTERPOLATE is not ADQL", order_by);
            }
        }
        set_expression(&query.body)
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<Error> {
        if !select.optimizer_hints.is_empty()
            || select.select_modifiers.is_some()
            || select.exclude.is_some()
            || select.into.is_some()
            || !select.lateral_views.is_empty()
            || select.prewhere.is_some()
            || !select.connect_by.is_empty()
            || !select.cluster_by.is_empty()
            || !select.distribute_by.is_empty()
            || !select.sort_by.is_empty()
            || !select.named_window.is_empty()
            || select.qualify.is_some()
            || select.value_table_mode.is_some()
            || !matches!(select.flavor, SelectFlavor::Standard)
        {
            return refuse("this SELECT clause is not ADQL", select);
        }
        if let Some(Distinct::On(_)) = select.distinct {
            return refuse("DISTINCT ON is not ADQL", select);
        }
        if let Some(top) = &select.top {
            if select.top_before_distinct && select.distinct.is_some() {
                return refuse(
                    "ADQL puts DISTINCT before TOP: SELECT DISTINCT TOP n",
                    select,
                );
            }
            let integer = matches!(top.quantity, Some(TopQuantity::Constant(_)));
            if !integer || top.percent || top.with_ties {
                return refuse("TOP takes an unsigned integer", select);
            }
        }
        if select.projection.is_empty() {
            return refuse("the select list is empty", select);
        }
        let alone = select.projection.len() == 1;
        for item in &select.projection {
            match item {
                SelectItem::Wildcard(_) if !alone => {
                    return refuse("'*' must be the whole select list (or write t.*)", item)
                }
                SelectItem::UnnamedExpr(_) => {}
                SelectItem::ExprWithAlias { alias, .. } => reserved_identifier(alias)?,
                SelectItem::Wildcard(options) | SelectItem::QualifiedWildcard(_, options)
                    if *options == WildcardAdditionalOptions::default() => {}
                other => return refuse("not an ADQL select item", other),
            }
        }
        if select.from.is_empty() {
            return refuse("ADQL needs a FROM clause", select);
        }
        for from in &select.from {
            for join in &from.joins {
                let constraint = match &join.join_operator {
                    JoinOperator::Join(c)
                    | JoinOperator::Inner(c)
                    | JoinOperator::Left(c)
                    | JoinOperator::LeftOuter(c)
                    | JoinOperator::Right(c)
                    | JoinOperator::RightOuter(c)
                    | JoinOperator::FullOuter(c) => c,
                    JoinOperator::CrossJoin(JoinConstraint::None) if !self.strict => continue,
                    _ => return refuse("this join is not ADQL", join),
                };
                match constraint {
                    JoinConstraint::None => return refuse("JOIN needs ON, USING or NATURAL", join),
                    JoinConstraint::Using(names) if names.iter().any(|n| n.0.len() != 1) => {
                        return refuse("USING takes plain column names", join)
                    }
                    JoinConstraint::On(on) if self.strict => condition(on)?,
                    _ => {}
                }
            }
        }
        match &select.group_by {
            GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => {
                for e in exprs {
                    if matches!(e, Expr::Rollup(_) | Expr::Cube(_) | Expr::GroupingSets(_)) {
                        return refuse("ROLLUP, CUBE and GROUPING SETS are not ADQL", e);
                    }
                }
            }
            _ => return refuse("this GROUP BY is not ADQL", select),
        }
        if self.strict {
            for item in &select.projection {
                if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item
                {
                    value(e)?;
                }
            }
            if let Some(e) = &select.selection {
                condition(e)?;
            }
            if let Some(e) = &select.having {
                condition(e)?;
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Error> {
        match factor {
            TableFactor::Table {
                name,
                alias,
                args: None,
                with_hints,
                version: None,
                with_ordinality: false,
                partitions,
                json_path: None,
                sample: None,
                index_hints,
            } if with_hints.is_empty() && partitions.is_empty() && index_hints.is_empty() => {
                object_name(name)?;
                table_alias(alias.as_ref())
            }
            TableFactor::Derived {
                lateral: false,
                alias,
                sample: None,
                ..
            } => match alias {
                Some(_) => table_alias(alias.as_ref()),
                None => refuse(
                    "a sub-query in FROM needs a name: (SELECT …) AS name",
                    factor,
                ),
            },
            TableFactor::NestedJoin { alias, .. } => table_alias(alias.as_ref()),
            other => refuse("not an ADQL table reference", other),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Error> {
        self.expression_depth += 1;
        if self.expression_depth > MAX_EXPRESSION_DEPTH {
            return refuse(
                format!(
                    "the query is nested too deeply (more than {MAX_EXPRESSION_DEPTH} levels): \
                     use IN (…) lists or upload the values as a table"
                ),
                expr,
            );
        }
        match expr {
            Expr::Identifier(i) => reserved_identifier(i),
            Expr::CompoundIdentifier(parts) => {
                for i in parts {
                    reserved_identifier(i)?;
                }
                ControlFlow::Continue(())
            }
            Expr::BinaryOp { op, .. } => match op {
                BinaryOperator::Plus
                | BinaryOperator::Minus
                | BinaryOperator::Multiply
                | BinaryOperator::Divide
                | BinaryOperator::StringConcat
                | BinaryOperator::Gt
                | BinaryOperator::Lt
                | BinaryOperator::GtEq
                | BinaryOperator::LtEq
                | BinaryOperator::Eq
                | BinaryOperator::NotEq
                | BinaryOperator::And
                | BinaryOperator::Or => ControlFlow::Continue(()),
                other => refuse(format!("operator {other} is not ADQL"), expr),
            },
            Expr::UnaryOp { op, .. } => match op {
                UnaryOperator::Plus | UnaryOperator::Minus | UnaryOperator::Not => {
                    ControlFlow::Continue(())
                }
                other => refuse(format!("operator {other} is not ADQL"), expr),
            },
            Expr::Cast {
                kind: CastKind::Cast,
                data_type,
                format: None,
                array: false,
                ..
            } => match adql_type(data_type) {
                true => ControlFlow::Continue(()),
                false => refuse(
                    format!("CAST to {data_type} is not ADQL (SMALLINT, INTEGER, BIGINT, REAL, DOUBLE PRECISION, CHAR(n), VARCHAR(n), TIMESTAMP)"),
                    expr,
                ),
            },
            Expr::Like {
                any: false,
                escape_char,
                ..
            }
            | Expr::ILike {
                any: false,
                escape_char,
                ..
            } => match escape_char {
                Some(_) if self.strict => refuse("LIKE … ESCAPE is not ADQL", expr),
                _ => ControlFlow::Continue(()),
            },
            Expr::Floor { field, .. } | Expr::Ceil { field, .. } => match field {
                CeilFloorKind::DateTimeField(DateTimeField::NoDateTime) => ControlFlow::Continue(()),
                _ => refuse("FLOOR/CEILING take one number", expr),
            },
            Expr::Function(f) => {
                if f.over.is_some()
                    || f.filter.is_some()
                    || f.null_treatment.is_some()
                    || !f.within_group.is_empty()
                    || f.uses_odbc_syntax
                    || !matches!(f.parameters, FunctionArguments::None)
                {
                    return refuse("window and filtered aggregates are not ADQL", expr);
                }
                if let FunctionArguments::List(list) = &f.args {
                    if !list.clauses.is_empty() {
                        return refuse("clauses inside a function call are not ADQL", expr);
                    }
                    if list.args.iter().any(|a| !matches!(a, FunctionArg::Unnamed(_))) {
                        return refuse("named arguments are not ADQL", expr);
                    }
                }
                function_arity(expr, &f.name, &f.args, self.strict)?;
                geometry_arity(expr, &f.name, &f.args)
            }
            Expr::Case { .. } | Expr::Subquery(_) if self.strict => refuse(
                "CASE and scalar sub-queries are not ADQL 2.1 (insitu runs them as an extension)",
                expr,
            ),
            Expr::Value(_)
            | Expr::Nested(_)
            | Expr::Case { .. }
            | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::InList { .. }
            | Expr::InSubquery { .. }
            | Expr::Between { .. }
            | Expr::Exists { .. }
            | Expr::Subquery(_) => ControlFlow::Continue(()),
            other => refuse(format!("{other} is not ADQL"), other),
        }
    }

    fn pre_visit_value(&mut self, value: &ValueWithSpan) -> ControlFlow<Error> {
        match &value.value {
            Value::Number(..) | Value::SingleQuotedString(_) | Value::Null => {
                ControlFlow::Continue(())
            }
            other => refuse(format!("{other} is not an ADQL literal"), value),
        }
    }
}

fn set_expression(body: &SetExpr) -> ControlFlow<Error> {
    match body {
        SetExpr::Select(_) | SetExpr::Query(_) => ControlFlow::Continue(()),
        SetExpr::SetOperation {
            op,
            set_quantifier,
            left,
            right,
        } => {
            if matches!(op, SetOperator::Minus)
                || !matches!(set_quantifier, SetQuantifier::All | SetQuantifier::None)
            {
                return refuse(format!("{op} {set_quantifier} is not ADQL"), body);
            }
            set_expression(left)?;
            set_expression(right)
        }
        other => refuse("not an ADQL query", other),
    }
}

fn table_alias(alias: Option<&datafusion::sql::sqlparser::ast::TableAlias>) -> ControlFlow<Error> {
    if let Some(alias) = alias {
        reserved_identifier(&alias.name)?;
        if !alias.columns.is_empty() {
            return refuse_at(
                "column lists in a table alias are not ADQL",
                alias.name.span,
            );
        }
    }
    ControlFlow::Continue(())
}

/// ADQL 2.1 §2.3.x: the types CAST may target.
fn adql_type(t: &DataType) -> bool {
    matches!(
        t,
        DataType::SmallInt(_)
            | DataType::Integer(_)
            | DataType::BigInt(_)
            | DataType::Real
            | DataType::DoublePrecision
            | DataType::Char(_)
            | DataType::Character(_)
            | DataType::Varchar(_)
            | DataType::CharacterVarying(_)
            | DataType::Timestamp(None, _)
    )
}

/// Arity of the geometry constructors and functions (ADQL 2.1 §4.2), where a leading
/// coordinate-system string is optional and a POINT may stand for two coordinates.
fn geometry_arity(expr: &Expr, name: &ObjectName, args: &FunctionArguments) -> ControlFlow<Error> {
    let name = name.to_string().to_ascii_uppercase();
    let list: Vec<&Expr> = match args {
        FunctionArguments::List(l) => l
            .args
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect(),
        _ => vec![],
    };
    let coordsys = list.first().is_some_and(
        |e| matches!(e, Expr::Value(v) if matches!(v.value, Value::SingleQuotedString(_))),
    );
    let rest = &list[usize::from(coordsys)..];
    let points = rest.iter().filter(|e| is_point(e)).count();
    let n = rest.len();
    let ok = match name.as_str() {
        "POINT" => n == 2 && points == 0,
        "CIRCLE" => (n == 3 && points == 0) || (n == 2 && points == 1 && is_point(rest[0])),
        "BOX" => (n == 4 && points == 0) || (n == 3 && points == 1 && is_point(rest[0])),
        "POLYGON" => (points == 0 && n >= 6 && n.is_multiple_of(2)) || (points == n && n >= 3),
        "DISTANCE" => (!coordsys && n == 2) || (!coordsys && n == 4 && points == 0),
        "CONTAINS" | "INTERSECTS" => !coordsys && n == 2,
        "AREA" | "CENTROID" | "COORD1" | "COORD2" | "COORDSYS" => !coordsys && n == 1,
        _ => return ControlFlow::Continue(()),
    };
    if ok {
        ControlFlow::Continue(())
    } else {
        refuse(
            format!("wrong arguments for {name}: {}", geometry_usage(&name)),
            expr,
        )
    }
}

fn geometry_usage(name: &str) -> &'static str {
    match name {
        "POINT" => "POINT([coordsys,] ra, dec)",
        "CIRCLE" => "CIRCLE([coordsys,] ra, dec, radius) or CIRCLE(POINT, radius)",
        "BOX" => "BOX([coordsys,] ra, dec, width, height) or BOX(POINT, width, height)",
        "POLYGON" => {
            "POLYGON([coordsys,] ra1, dec1, ra2, dec2, ra3, dec3, …) with 3 vertices or more"
        }
        "DISTANCE" => "DISTANCE(POINT, POINT) or DISTANCE(ra1, dec1, ra2, dec2)",
        "CONTAINS" | "INTERSECTS" => "two geometries",
        _ => "one geometry",
    }
}

fn is_point(e: &Expr) -> bool {
    matches!(e, Expr::Function(f) if {
        let n = f.name.to_string();
        n.eq_ignore_ascii_case("POINT") || n.eq_ignore_ascii_case("CENTROID")
    })
}

fn unsigned_integer(v: &Value) -> bool {
    matches!(v, Value::Number(n, _) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The arguments of ADQL's own functions (ADQL 2.1 §2.3, §4): how many, and the literal
/// kinds some of them must be. In strict mode a function named by a reserved word must be
/// one of ADQL's.
fn function_arity(
    expr: &Expr,
    name: &ObjectName,
    args: &FunctionArguments,
    strict: bool,
) -> ControlFlow<Error> {
    let upper = name.to_string().to_ascii_uppercase();
    let (list, distinct) = match args {
        FunctionArguments::List(l) => (l.args.as_slice(), l.duplicate_treatment.is_some()),
        _ => (&[][..], false),
    };
    let star = list
        .iter()
        .any(|a| matches!(a, FunctionArg::Unnamed(FunctionArgExpr::Wildcard)));
    let arg = |i: usize| match list.get(i) {
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e))) => Some(e),
        _ => None,
    };
    let literal = |i: usize, test: fn(&Value) -> bool| {
        matches!(arg(i), Some(Expr::Value(v)) if test(&v.value))
            || matches!(arg(i), Some(Expr::UnaryOp { op: UnaryOperator::Minus | UnaryOperator::Plus, expr })
                if matches!(expr.as_ref(), Expr::Value(v) if test(&v.value)))
    };
    let n = list.len();
    let ok = match upper.as_str() {
        "PI" => n == 0,
        "RAND" => n <= 1,
        "ABS" | "ACOS" | "ASIN" | "ATAN" | "CEILING" | "COS" | "COT" | "DEGREES" | "EXP"
        | "FLOOR" | "LOG" | "LOG10" | "RADIANS" | "SIN" | "SQRT" | "TAN" | "LOWER" | "UPPER" => {
            n == 1
        }
        "ATAN2" | "MOD" | "POWER" => n == 2,
        "ROUND" | "TRUNCATE" => n == 1 || (n == 2 && literal(1, unsigned_integer)),
        "IN_UNIT" => n == 2 && literal(1, |v| matches!(v, Value::SingleQuotedString(_))),
        "COALESCE" => n >= 1,
        "COUNT" => n == 1 && !(star && distinct),
        "SUM" | "AVG" | "MIN" | "MAX" => n == 1 && !star,
        _ if strict && is_reserved(&upper) && !is_geometry(&upper) => {
            return refuse(format!("{upper} is not an ADQL function"), expr)
        }
        _ => return ControlFlow::Continue(()),
    };
    if ok && (!star || upper == "COUNT") {
        ControlFlow::Continue(())
    } else {
        refuse(format!("wrong arguments for {upper}"), expr)
    }
}

fn is_geometry(name: &str) -> bool {
    [
        "POINT",
        "CIRCLE",
        "BOX",
        "POLYGON",
        "REGION",
        "CONTAINS",
        "INTERSECTS",
        "DISTANCE",
        "AREA",
        "CENTROID",
        "COORD1",
        "COORD2",
        "COORDSYS",
    ]
    .contains(&name)
}

/// Strict ADQL has no boolean values: a search condition (WHERE, HAVING, ON, CASE WHEN) is
/// built of predicates, and predicates are not values.
fn condition(e: &Expr) -> ControlFlow<Error> {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And | BinaryOperator::Or,
            right,
        } => {
            condition(left)?;
            condition(right)
        }
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        }
        | Expr::Nested(expr) => condition(expr),
        Expr::BinaryOp { left, op, right } if comparison(op) => {
            value(left)?;
            value(right)
        }
        Expr::IsNull(v) | Expr::IsNotNull(v) => value(v),
        Expr::Between {
            expr, low, high, ..
        } => {
            value(expr)?;
            value(low)?;
            value(high)
        }
        Expr::Like { expr, pattern, .. } | Expr::ILike { expr, pattern, .. } => {
            value(expr)?;
            value(pattern)
        }
        Expr::InList { expr, list, .. } => {
            value(expr)?;
            list.iter().try_for_each(value)
        }
        Expr::InSubquery { expr, .. } => value(expr),
        Expr::Exists { .. } => ControlFlow::Continue(()),
        other => refuse(
            "a condition must be a comparison or predicate (e.g. 1 = CONTAINS(…))",
            other,
        ),
    }
}

fn comparison(op: &BinaryOperator) -> bool {
    matches!(
        op,
        BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq
    )
}

/// A value expression: no predicate inside (outside of sub-queries, checked on their own).
fn value(e: &Expr) -> ControlFlow<Error> {
    match e {
        Expr::BinaryOp { left, op, right }
            if !comparison(op) && !matches!(op, BinaryOperator::And | BinaryOperator::Or) =>
        {
            value(left)?;
            value(right)
        }
        Expr::UnaryOp {
            op: UnaryOperator::Plus | UnaryOperator::Minus,
            expr,
        }
        | Expr::Nested(expr)
        | Expr::Floor { expr, .. }
        | Expr::Ceil { expr, .. }
        | Expr::Cast { expr, .. } => value(expr),
        Expr::Function(f) => match &f.args {
            FunctionArguments::List(l) => l.args.iter().try_for_each(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => value(e),
                _ => ControlFlow::Continue(()),
            }),
            _ => ControlFlow::Continue(()),
        },
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            if let Some(o) = operand {
                value(o)?;
            }
            for c in conditions {
                match operand {
                    Some(_) => value(&c.condition)?,
                    None => condition(&c.condition)?,
                }
                value(&c.result)?;
            }
            match else_result {
                Some(e) => value(e),
                None => ControlFlow::Continue(()),
            }
        }
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Value(_) | Expr::Subquery(_) => {
            ControlFlow::Continue(())
        }
        other => refuse("a predicate is not a value in ADQL", other),
    }
}

/// Whether `word` is an SQL-92 reserved word (as ADQL 2.1 §2.1.2 lists them) or ADQL's own.
pub fn is_reserved(word: &str) -> bool {
    const RESERVED: &[&str] = &[
        "ABS",
        "ABSOLUTE",
        "ACOS",
        "ACTION",
        "ADD",
        "ALL",
        "ALLOCATE",
        "ALTER",
        "AND",
        "ANY",
        "ARE",
        "AREA",
        "AS",
        "ASC",
        "ASIN",
        "ASSERTION",
        "AT",
        "ATAN",
        "ATAN2",
        "AUTHORIZATION",
        "AVG",
        "BEGIN",
        "BETWEEN",
        "BIGINT",
        "BIT",
        "BIT_LENGTH",
        "BOTH",
        "BOX",
        "BY",
        "CASCADE",
        "CASCADED",
        "CASE",
        "CAST",
        "CATALOG",
        "CEILING",
        "CENTROID",
        "CHAR",
        "CHARACTER",
        "CHARACTER_LENGTH",
        "CHAR_LENGTH",
        "CHECK",
        "CIRCLE",
        "CLOSE",
        "COALESCE",
        "COLLATE",
        "COLLATION",
        "COLUMN",
        "COMMIT",
        "CONNECT",
        "CONNECTION",
        "CONSTRAINT",
        "CONSTRAINTS",
        "CONTAINS",
        "CONTINUE",
        "CONVERT",
        "COORD1",
        "COORD2",
        "COORDSYS",
        "CORRESPONDING",
        "COS",
        "COT",
        "COUNT",
        "CREATE",
        "CROSS",
        "CURRENT",
        "CURRENT_DATE",
        "CURRENT_TIME",
        "CURRENT_TIMESTAMP",
        "CURRENT_USER",
        "CURSOR",
        "DATE",
        "DAY",
        "DEALLOCATE",
        "DECIMAL",
        "DECLARE",
        "DEFAULT",
        "DEFERRABLE",
        "DEFERRED",
        "DEGREES",
        "DELETE",
        "DESC",
        "DESCRIBE",
        "DESCRIPTOR",
        "DIAGNOSTICS",
        "DISCONNECT",
        "DISTANCE",
        "DISTINCT",
        "DOMAIN",
        "DOUBLE",
        "DROP",
        "ELSE",
        "END",
        "ESCAPE",
        "EXCEPT",
        "EXCEPTION",
        "EXEC",
        "EXECUTE",
        "EXISTS",
        "EXP",
        "EXTERNAL",
        "EXTRACT",
        "FALSE",
        "FETCH",
        "FIRST",
        "FLOAT",
        "FLOOR",
        "FOR",
        "FOREIGN",
        "FOUND",
        "FROM",
        "FULL",
        "GET",
        "GLOBAL",
        "GO",
        "GOTO",
        "GRANT",
        "GROUP",
        "HAVING",
        "HOUR",
        "IDENTITY",
        "ILIKE",
        "IMMEDIATE",
        "IN",
        "INDICATOR",
        "INITIALLY",
        "INNER",
        "INPUT",
        "INSENSITIVE",
        "INSERT",
        "INT",
        "INTEGER",
        "INTERSECT",
        "INTERSECTS",
        "INTERVAL",
        "INTO",
        "IN_UNIT",
        "IS",
        "ISOLATION",
        "JOIN",
        "KEY",
        "LANGUAGE",
        "LAST",
        "LEADING",
        "LEFT",
        "LEVEL",
        "LIKE",
        "LOCAL",
        "LOG",
        "LOG10",
        "LOWER",
        "MATCH",
        "MAX",
        "MIN",
        "MINUTE",
        "MOD",
        "MODULE",
        "MONTH",
        "NAMES",
        "NATIONAL",
        "NATURAL",
        "NCHAR",
        "NEXT",
        "NO",
        "NOT",
        "NULL",
        "NULLIF",
        "NUMERIC",
        "OCTET_LENGTH",
        "OF",
        "OFFSET",
        "ON",
        "ONLY",
        "OPEN",
        "OPTION",
        "OR",
        "ORDER",
        "OUTER",
        "OUTPUT",
        "OVERLAPS",
        "PAD",
        "PARTIAL",
        "PI",
        "POINT",
        "POLYGON",
        "POSITION",
        "POWER",
        "PRECISION",
        "PREPARE",
        "PRESERVE",
        "PRIMARY",
        "PRIOR",
        "PRIVILEGES",
        "PROCEDURE",
        "PUBLIC",
        "RADIANS",
        "RAND",
        "READ",
        "REAL",
        "REFERENCES",
        "REGION",
        "RELATIVE",
        "RESTRICT",
        "REVOKE",
        "RIGHT",
        "ROLLBACK",
        "ROUND",
        "ROWS",
        "SCHEMA",
        "SCROLL",
        "SECOND",
        "SECTION",
        "SELECT",
        "SESSION",
        "SESSION_USER",
        "SET",
        "SIN",
        "SIZE",
        "SMALLINT",
        "SOME",
        "SPACE",
        "SQL",
        "SQLCODE",
        "SQLERROR",
        "SQLSTATE",
        "SQRT",
        "SUBSTRING",
        "SUM",
        "SYSTEM_USER",
        "TABLE",
        "TAN",
        "TEMPORARY",
        "THEN",
        "TIME",
        "TIMESTAMP",
        "TIMEZONE_HOUR",
        "TIMEZONE_MINUTE",
        "TO",
        "TOP",
        "TRAILING",
        "TRANSACTION",
        "TRANSLATE",
        "TRANSLATION",
        "TRIM",
        "TRUE",
        "TRUNCATE",
        "UNION",
        "UNIQUE",
        "UNKNOWN",
        "UPDATE",
        "UPPER",
        "USAGE",
        "USER",
        "USING",
        "VALUE",
        "VALUES",
        "VARCHAR",
        "VARYING",
        "VIEW",
        "WHEN",
        "WHENEVER",
        "WHERE",
        "WITH",
        "WORK",
        "WRITE",
        "YEAR",
        "ZONE",
    ];
    let upper = word.to_ascii_uppercase();
    RESERVED.binary_search(&upper.as_str()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_words_are_sorted_for_binary_search() {
        assert!(is_reserved("select") && is_reserved("ZONE") && is_reserved("abs"));
        assert!(!is_reserved("ra") && !is_reserved("dec") && !is_reserved("name"));
    }

    #[test]
    fn refuses_anything_but_one_adql_query() {
        for q in [
            "DROP TABLE t",
            "SELECT 1; SELECT 2",
            "INSERT INTO t VALUES (1)",
            "SELECT a FROM t; DROP TABLE t",
            "",
            "SELECT a FROM t LIMIT 3",
            "SELECT a FROM t WHERE a == 1",
            "SELECT a & 1 FROM t",
            "SELECT a::int FROM t",
            "SELECT FROM t",
            "SELECT 1",
            "SELECT * FROM where",
            "SELECT TOP 5 DISTINCT a FROM t",
            "SELECT `a` FROM t",
            "SELECT a FROM t JOIN u",
            "SELECT POINT(1) FROM t",
            "SELECT a FROM t WHERE 1 = CONTAINS(POINT(a, b), CIRCLE(1, 2))",
            "SELECT a FROM (SELECT a FROM t)",
            "SELECT 0x1F FROM t",
            "SELECT CASE WHEN a > 1 THEN 1 ELSE 0 END FROM t",
        ] {
            assert!(check(q).is_err(), "{q}");
        }
        for q in [
            "SELECT DISTINCT TOP 5 a AS \"select\" FROM s.t AS x ORDER BY a OFFSET 2",
            "SELECT a FROM t WHERE 1 = CONTAINS(POINT('ICRS', a, b), CIRCLE(POINT(1, 2), 3))",
            "SELECT a FROM t WHERE a <> 1 AND a != 2 -- a comment",
        ] {
            assert!(check(q).is_ok(), "{q}: {:?}", check(q));
        }
        assert!(parse(
            "SELECT CASE WHEN a > 1 THEN (SELECT MAX(b) FROM u) END FROM t CROSS JOIN v"
        )
        .is_ok());
        let err = check("SELECT ra FROM t\nWHERE ra > > 1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("Line: 2"), "{err}");
        let err = check("SELECT ra FROM t\n  WHERE ra == 1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("Line: 2, Column: 12"), "{err}");
    }
}
