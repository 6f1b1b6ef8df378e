//! The sans-IO AXL service: one HTTP request in, one response out (SOAP operations, basic
//! auth, faults). The module doc of [`super`] describes the protocol.

use super::sql::{Cond, Select, like, parse_select};
use crate::imp::directory::{Directory, UserRecord};
use base64::Engine as _;
use connector::proto::xml::{Element, escape, parse_document};
use std::fmt::Write as _;
use std::rc::Rc;

/// The AXL port (Tomcat HTTPS on real nodes; plain HTTP here, as every link in the simulation).
pub const AXL_PORT: u16 = 8443;

/// The largest request body accepted, in bytes. Discovery requests are under 1 KiB; 64 KiB
/// leaves room for long SQL while bounding what a peer makes the node buffer.
pub const AXL_BODY_BYTES_MAX: usize = 64 * 1024;

/// The most rows one `executeSQLQuery` returns before it is refused (real AXL refuses large
/// results with "Query request too large" and expects `SKIP`/`FIRST` paging). Above the largest
/// organization (195,000 users, spec 4) so that discovery never has to page, yet bounded.
pub const AXL_SQL_ROWS_MAX: usize = 200_000;

/// How long hyper waits for a request's headers before closing the connection: a peer that
/// opens a connection and sends nothing does not hold it for ever.
pub const AXL_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The SOAP 1.1 envelope namespace.
pub const NS_SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// The AXL schema namespace answered when the request's cannot be determined.
pub const NS_AXL_DEFAULT: &str = "http://www.cisco.com/AXL/API/14.0";

/// The `processNodeRole` of IM and Presence nodes.
pub const ROLE_IMP: &str = "CUCM IM and Presence";

/// The realm sent with 401 responses.
const REALM: &str = "Basic realm=\"Cisco AXL\"";

/// An application user allowed to log in to AXL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxlAccount {
    /// User name.
    pub username: String,
    /// Password (a secret: never logged).
    pub password: String,
    /// Holds "Standard AXL API Access" (spec 17).
    pub axl_role: bool,
}

/// One node of the cluster as `listProcessNode` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxlNode {
    /// Host name (`imp-a-1`).
    pub name: String,
    /// Free-text description.
    pub description: String,
    /// Software version, `major.minor` (`14.0`).
    pub version: String,
    /// The other node of its Presence Redundancy Group, if paired.
    pub prg_peer: Option<String>,
    /// Whether the PRG has high availability enabled (spec 61).
    pub prg_high_availability: bool,
}

/// Counters of the AXL service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AxlStats {
    /// Requests answered 200.
    pub ok: u64,
    /// Requests refused with 401.
    pub unauthorized: u64,
    /// SOAP faults returned.
    pub faults: u64,
    /// Requests refused because the service is stopped.
    pub stopped: u64,
    /// Other refusals (404, 405, 413).
    pub other: u64,
}

/// An HTTP request as the sans-IO core sees it.
#[derive(Debug, Clone, Copy)]
pub struct AxlRequest<'a> {
    /// Method (`POST`).
    pub method: &'a str,
    /// Path (`/axl/`); a query string is ignored.
    pub path: &'a str,
    /// Headers (names compared case-insensitively).
    pub headers: &'a [(String, String)],
    /// The body.
    pub body: &'a [u8],
}

/// An HTTP response from the sans-IO core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxlResponse {
    /// Status code.
    pub status: u16,
    /// Headers to send.
    pub headers: Vec<(String, String)>,
    /// The body (XML, HTML or empty).
    pub body: String,
}

impl AxlResponse {
    pub(super) fn new(status: u16, content_type: &str, body: String) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
        }
    }
}

/// The AXL service of one IM&P publisher.
#[derive(Debug)]
pub struct AxlService {
    accounts: Vec<AxlAccount>,
    nodes: Vec<AxlNode>,
    /// Users of this cluster (local or not: intercluster is decided by the home node).
    dir: Rc<Directory>,
    /// Users of other clusters learned through ICSA (spec 23).
    icsa: Vec<UserRecord>,
    stopped: bool,
    stats: AxlStats,
    /// The rows of the last `executeSQLQuery`, for its next page ([`AxlService::table`]).
    table: Option<Rc<Table>>,
    /// Tables built so far: one per distinct query, not one per page.
    tables_built: u64,
}

impl AxlService {
    /// A running service for the cluster of `nodes`, serving `dir` (this cluster's users) and
    /// `icsa` (users of other clusters, reported with `intercluster = t`).
    pub fn new(
        accounts: Vec<AxlAccount>,
        nodes: Vec<AxlNode>,
        dir: Rc<Directory>,
        icsa: Vec<UserRecord>,
    ) -> Self {
        Self {
            accounts,
            nodes,
            dir,
            icsa,
            stopped: false,
            stats: AxlStats::default(),
            table: None,
            tables_built: 0,
        }
    }

    /// Stops or starts the service (spec 22): a stopped service answers 503.
    pub fn set_stopped(&mut self, stopped: bool) {
        self.stopped = stopped;
    }

    /// Changes the PRG high availability `listProcessNode` reports for `node` (spec 61: the
    /// administrator changed it; a connector sees it at its next discovery, i.e. restart).
    /// Returns false when the service does not list `node`.
    pub fn set_prg_high_availability(&mut self, node: &str, on: bool) -> bool {
        match self.nodes.iter_mut().find(|n| n.name == node) {
            Some(n) => {
                n.prg_high_availability = on;
                true
            }
            None => false,
        }
    }

    /// Whether the service is stopped.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Counters so far.
    pub fn stats(&self) -> &AxlStats {
        &self.stats
    }

    /// `executeSQLQuery` result tables built so far: one per distinct query (conditions and
    /// order), however many pages are read of it.
    pub fn tables_built(&self) -> u64 {
        self.tables_built
    }

    /// Answers one request.
    pub fn handle(&mut self, req: AxlRequest<'_>) -> AxlResponse {
        if self.stopped {
            self.stats.stopped += 1;
            return AxlResponse::new(
                503,
                "text/plain",
                "Cisco AXL Web Service is not running\n".into(),
            );
        }
        let path = req.path.split('?').next().unwrap_or_default();
        if path != "/axl/" && path != "/axl" {
            self.stats.other += 1;
            return AxlResponse::new(404, "text/plain", "not found\n".into());
        }
        let account = match self.authenticate(req.headers) {
            Some(a) => a.clone(),
            None => {
                self.stats.unauthorized += 1;
                let mut r = AxlResponse::new(401, "text/plain", "authentication required\n".into());
                r.headers.push(("WWW-Authenticate".into(), REALM.into()));
                return r;
            }
        };
        match req.method {
            "GET" => return self.working_page(),
            "POST" => {}
            _ => {
                self.stats.other += 1;
                let mut r = AxlResponse::new(405, "text/plain", "method not allowed\n".into());
                r.headers.push(("Allow".into(), "GET, POST".into()));
                return r;
            }
        }
        self.soap(&account, req.body)
    }

    /// `GET /axl/`: the health check page.
    fn working_page(&mut self) -> AxlResponse {
        self.stats.ok += 1;
        AxlResponse::new(
            200,
            "text/html",
            "<html><body><h2>Cisco CallManager: AXL Web Service</h2>\
             <p>The AXL Web Service is working and accepting requests.</p>\
             </body></html>"
                .into(),
        )
    }

    /// A SOAP request (`POST /axl/`) of an authenticated account.
    fn soap(&mut self, account: &AxlAccount, body: &[u8]) -> AxlResponse {
        if body.len() > AXL_BODY_BYTES_MAX {
            self.stats.other += 1;
            return AxlResponse::new(413, "text/plain", "request body too large\n".into());
        }
        let (op, ns, request) = match parse_request(body) {
            Ok(parsed) => parsed,
            Err(msg) => return self.fault("soapenv:Client", &msg, "", NS_AXL_DEFAULT),
        };
        if !account.axl_role {
            // Spec 17: the account lacks "Standard AXL API Access".
            return self.fault(
                "soapenv:Server",
                "User not authorized for the AXL API (missing role Standard AXL API Access)",
                &op,
                &ns,
            );
        }
        let result = match op.as_str() {
            "listProcessNode" => Ok(self.list_process_node(&request)),
            "executeSQLQuery" => self.execute_sql(&request),
            other => Err(format!("Unknown or unsupported AXL operation: {other}")),
        };
        match result {
            Ok(ret) => {
                self.stats.ok += 1;
                let body = envelope(&format!(
                    "<ns:{op}Response xmlns:ns=\"{}\"><return>{ret}</return></ns:{op}Response>",
                    escape(&ns)
                ));
                AxlResponse::new(200, "text/xml; charset=utf-8", body)
            }
            Err(msg) => self.fault("soapenv:Client", &msg, &op, &ns),
        }
    }

    fn authenticate(&self, headers: &[(String, String)]) -> Option<&AxlAccount> {
        let value = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.trim())?;
        let (scheme, b64) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (user, pass) = text.split_once(':')?;
        self.accounts
            .iter()
            .find(|a| a.username == user && a.password == pass)
    }

    fn fault(&mut self, code: &str, msg: &str, op: &str, _ns: &str) -> AxlResponse {
        self.stats.faults += 1;
        let body = envelope(&format!(
            "<soapenv:Fault><faultcode>{code}</faultcode><faultstring>{}</faultstring>\
             <detail><axlError><axlcode>-1</axlcode><axlmessage>{}</axlmessage>\
             <request>{}</request></axlError></detail></soapenv:Fault>",
            escape(msg),
            escape(msg),
            escape(op)
        ));
        AxlResponse::new(500, "text/xml; charset=utf-8", body)
    }

    fn list_process_node(&self, req: &Element) -> String {
        let criteria = child_local(req, "searchCriteria");
        let name_pat = criteria
            .and_then(|c| child_local(c, "name"))
            .map(Element::text)
            .unwrap_or_else(|| "%".into());
        let role_pat = criteria
            .and_then(|c| child_local(c, "processNodeRole"))
            .map(Element::text);
        let tags: Vec<String> = child_local(req, "returnedTags")
            .map(|t| t.elements().map(|e| e.name.clone()).collect())
            .unwrap_or_default();
        let want = |t: &str| tags.is_empty() || tags.iter().any(|x| x == t);
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if !like(&n.name, &name_pat) {
                continue;
            }
            if let Some(r) = &role_pat
                && !r.is_empty()
                && !like(ROLE_IMP, r)
            {
                continue;
            }
            let _ = write!(
                out,
                "<processNode uuid=\"{{00000000-0000-0000-0000-{:012}}}\">",
                i + 1
            );
            let fields = [
                ("name", n.name.clone()),
                ("description", n.description.clone()),
                ("processNodeRole", ROLE_IMP.to_string()),
                ("version", n.version.clone()),
                ("prgPeer", n.prg_peer.clone().unwrap_or_default()),
                ("prgHighAvailability", n.prg_high_availability.to_string()),
            ];
            for (tag, value) in fields {
                if want(tag) {
                    push_field(&mut out, tag, &value);
                }
            }
            out.push_str("</processNode>");
        }
        out
    }

    fn execute_sql(&mut self, req: &Element) -> Result<String, String> {
        let sql = child_local(req, "sql")
            .map(Element::text)
            .ok_or_else(|| "executeSQLQuery requires <sql>".to_string())?;
        let q = parse_select(&sql)?;
        let table = self.table(&q);
        let rows = table
            .rows
            .get(q.skip.min(table.rows.len())..)
            .unwrap_or_default();
        let rows = &rows[..rows.len().min(q.first.unwrap_or(usize::MAX))];
        if rows.len() > AXL_SQL_ROWS_MAX {
            return Err(format!(
                "Query request too large. Total rows matched: {} rows. \
                 Suggestive Row Fetch: less than {AXL_SQL_ROWS_MAX} rows",
                rows.len()
            ));
        }
        let mut out = String::new();
        for row in rows {
            out.push_str("<row>");
            for col in &q.columns {
                push_field(&mut out, col, value_of(row, col));
            }
            out.push_str("</row>");
        }
        Ok(out)
    }

    /// The rows matching `q`'s conditions in its order: the last one built when the query
    /// differs only in `SKIP`/`FIRST` (discovery pages through one query, 250 rows at a time,
    /// from every connector node) of the same directory, else built now.
    fn table(&mut self, q: &Select) -> Rc<Table> {
        if let Some(t) = &self.table
            && Rc::ptr_eq(&t.dir, &self.dir)
            && t.conds == q.conds
            && t.order_by == q.order_by
        {
            return t.clone();
        }
        let local_nodes: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
        let mut rows: Vec<Row> = Vec::new();
        for u in self.dir.iter().chain(self.icsa.iter()) {
            let intercluster = !local_nodes.contains(&u.home.as_str());
            let full: Row = COLUMNS
                .iter()
                .map(|c| (*c, column_value(u, c, intercluster)))
                .collect();
            if q.conds.iter().all(|cond| cond.matches(&full)) {
                rows.push(full);
            }
        }
        if let Some(col) = q.order_by {
            // Stable: rows equal in `col` keep the directory's order, as on every page.
            rows.sort_by(|a, b| value_of(a, col).cmp(value_of(b, col)));
        }
        self.tables_built += 1;
        let t = Rc::new(Table {
            dir: self.dir.clone(),
            conds: q.conds.clone(),
            order_by: q.order_by,
            rows,
        });
        self.table = Some(t.clone());
        t
    }
}

/// One `enduser` row: every column of [`COLUMNS`] with its value.
type Row = Vec<(&'static str, String)>;

/// The rows one query's conditions select, in its order, before `SKIP`/`FIRST`.
#[derive(Debug)]
struct Table {
    /// The directory it was built from (tests swap it).
    dir: Rc<Directory>,
    conds: Vec<Cond>,
    order_by: Option<&'static str>,
    rows: Vec<Row>,
}

/// The columns of the fake `enduser` table, in `SELECT *` order.
pub const COLUMNS: [&str; 7] = [
    "userid",
    "firstname",
    "lastname",
    "mailid",
    "jid",
    "homenode",
    "intercluster",
];

fn column_value(u: &UserRecord, col: &str, intercluster: bool) -> String {
    match col {
        "userid" => u.userid.clone(),
        "mailid" => u.email.clone().unwrap_or_default(),
        "jid" => u.jid.clone(),
        "homenode" => u.home.clone(),
        "intercluster" => if intercluster { "t" } else { "f" }.into(),
        _ => String::new(),
    }
}

pub(super) fn value_of<'a>(row: &'a [(&'static str, String)], col: &str) -> &'a str {
    row.iter()
        .find(|(c, _)| *c == col)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

fn push_field(out: &mut String, tag: &str, value: &str) {
    if value.is_empty() {
        let _ = write!(out, "<{tag}/>");
    } else {
        let _ = write!(out, "<{tag}>{}</{tag}>", escape(value));
    }
}

fn envelope(body: &str) -> String {
    format!(
        "<?xml version='1.0' encoding='UTF-8'?><soapenv:Envelope xmlns:soapenv=\"{NS_SOAP_ENV}\">\
         <soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    )
}

/// The first child element with this local name, whatever its namespace (AXL clients differ
/// in whether request children are qualified).
fn child_local<'a>(el: &'a Element, name: &str) -> Option<&'a Element> {
    el.elements().find(|e| e.name == name)
}

/// Parses a SOAP request: (operation, its namespace, the operation element).
fn parse_request(body: &[u8]) -> Result<(String, String, Element), String> {
    let root = parse_document(body).map_err(|e| format!("Malformed SOAP request: {e}"))?;
    if !root.is("Envelope", NS_SOAP_ENV) {
        return Err("Malformed SOAP request: the root is not a SOAP 1.1 Envelope".into());
    }
    let body = root
        .child("Body", NS_SOAP_ENV)
        .ok_or("Malformed SOAP request: no soapenv:Body")?;
    let op = body
        .elements()
        .next()
        .ok_or("Malformed SOAP request: empty soapenv:Body")?;
    let ns = if op.ns.is_empty() {
        NS_AXL_DEFAULT.to_string()
    } else {
        op.ns.clone()
    };
    Ok((op.name.clone(), ns, op.clone()))
}

#[cfg(test)]
mod tests {
    use super::super::sql::SYNTAX;
    use super::*;

    fn user(userid: &str, email: Option<&str>, home: &str) -> UserRecord {
        UserRecord {
            userid: userid.into(),
            jid: format!("{userid}@example.com"),
            email: email.map(Into::into),
            password: "pw".into(),
            home: home.into(),
        }
    }

    fn service() -> AxlService {
        let dir = Rc::new(Directory::new([
            user("alice", Some("alice@example.com"), "imp-a-1"),
            user("bob", Some("bob@example.com"), "imp-a-2"),
            user("nomail", None, "imp-a-1"),
        ]));
        AxlService::new(
            vec![
                AxlAccount {
                    username: "axl".into(),
                    password: "secret".into(),
                    axl_role: true,
                },
                AxlAccount {
                    username: "norole".into(),
                    password: "secret".into(),
                    axl_role: false,
                },
            ],
            vec![
                AxlNode {
                    name: "imp-a-1".into(),
                    description: "publisher".into(),
                    version: "14.0".into(),
                    prg_peer: Some("imp-a-2".into()),
                    prg_high_availability: true,
                },
                AxlNode {
                    name: "imp-a-2".into(),
                    description: String::new(),
                    version: "14.0".into(),
                    prg_peer: Some("imp-a-1".into()),
                    prg_high_availability: true,
                },
            ],
            dir,
            vec![user("carol", Some("carol@example.com"), "imp-b-1")],
        )
    }

    fn auth(user: &str, pass: &str) -> Vec<(String, String)> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        vec![
            ("Authorization".into(), format!("Basic {b64}")),
            ("Content-Type".into(), "text/xml".into()),
            (
                "SOAPAction".into(),
                "\"CUCM:DB ver=14.0 executeSQLQuery\"".into(),
            ),
        ]
    }

    /// A request as the public AXL clients (zeep, suds, curl examples) write it.
    fn soap(op: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
             xmlns:ns=\"http://www.cisco.com/AXL/API/12.5\">\n  <soapenv:Header/>\n  \
             <soapenv:Body>\n    {op}\n  </soapenv:Body>\n</soapenv:Envelope>\n"
        )
    }

    fn post(svc: &mut AxlService, headers: &[(String, String)], body: &str) -> AxlResponse {
        svc.handle(AxlRequest {
            method: "POST",
            path: "/axl/",
            headers,
            body: body.as_bytes(),
        })
    }

    fn sql(q: &str) -> String {
        soap(&format!(
            "<ns:executeSQLQuery sequence=\"1\"><sql>{}</sql></ns:executeSQLQuery>",
            escape(q)
        ))
    }

    fn rows(resp: &AxlResponse) -> Vec<Element> {
        assert_eq!(resp.status, 200, "{}", resp.body);
        let root = parse_document(resp.body.as_bytes()).unwrap();
        let body = root.child("Body", NS_SOAP_ENV).unwrap();
        let op = body.elements().next().unwrap();
        assert_eq!(op.name, "executeSQLQueryResponse");
        let ret = op.child("return", "").unwrap();
        ret.elements().cloned().collect()
    }

    fn field(row: &Element, name: &str) -> String {
        row.child(name, "").map(Element::text).unwrap()
    }

    fn fault_string(resp: &AxlResponse) -> String {
        assert_eq!(resp.status, 500, "{}", resp.body);
        let root = parse_document(resp.body.as_bytes()).unwrap();
        let fault = root
            .child("Body", NS_SOAP_ENV)
            .and_then(|b| b.child("Fault", NS_SOAP_ENV))
            .expect("a soapenv:Fault");
        fault.child("faultstring", "").unwrap().text()
    }

    #[test]
    fn list_process_node_matches_the_real_shape() {
        let mut svc = service();
        let body = soap(
            "<ns:listProcessNode sequence=\"1\"><searchCriteria><name>%</name>\
             <processNodeRole>CUCM IM and Presence</processNodeRole></searchCriteria>\
             <returnedTags><name/><processNodeRole/><version/><prgPeer/></returnedTags>\
             </ns:listProcessNode>",
        );
        let resp = post(&mut svc, &auth("axl", "secret"), &body);
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert!(
            resp.body.contains("<soapenv:Envelope")
                && resp
                    .body
                    .contains("<soapenv:Body><ns:listProcessNodeResponse")
                && resp.body.contains("<return><processNode uuid=")
        );
        let root = parse_document(resp.body.as_bytes()).unwrap();
        let op = root
            .child("Body", NS_SOAP_ENV)
            .unwrap()
            .elements()
            .next()
            .unwrap();
        assert_eq!(
            op.ns, "http://www.cisco.com/AXL/API/12.5",
            "echoes the version"
        );
        let nodes: Vec<_> = op
            .child("return", "")
            .unwrap()
            .elements()
            .cloned()
            .collect();
        assert_eq!(nodes.len(), 2);
        assert_eq!(field(&nodes[0], "name"), "imp-a-1");
        assert_eq!(field(&nodes[0], "processNodeRole"), ROLE_IMP);
        assert_eq!(field(&nodes[0], "version"), "14.0");
        assert_eq!(field(&nodes[0], "prgPeer"), "imp-a-2");
        assert!(nodes[0].child("description", "").is_none(), "not requested");

        let only2 = soap(
            "<ns:listProcessNode><searchCriteria><name>%-2</name></searchCriteria>\
             </ns:listProcessNode>",
        );
        let resp = post(&mut svc, &auth("axl", "secret"), &only2);
        assert!(resp.body.contains("<name>imp-a-2</name>"));
        assert!(!resp.body.contains("<name>imp-a-1</name>"));
        assert!(
            resp.body
                .contains("<prgHighAvailability>true</prgHighAvailability>")
        );
    }

    #[test]
    fn sql_returns_users_without_mailid_empty_and_marks_intercluster() {
        let mut svc = service();
        let resp = post(
            &mut svc,
            &auth("axl", "secret"),
            &sql("SELECT userid, mailid, jid, homenode, intercluster FROM enduser"),
        );
        let rows = rows(&resp);
        assert_eq!(rows.len(), 4);
        let by = |u: &str| {
            rows.iter()
                .find(|r| field(r, "userid") == u)
                .cloned()
                .unwrap()
        };
        assert_eq!(field(&by("alice"), "mailid"), "alice@example.com");
        assert_eq!(field(&by("alice"), "homenode"), "imp-a-1");
        assert_eq!(field(&by("alice"), "intercluster"), "f");
        assert_eq!(field(&by("bob"), "homenode"), "imp-a-2");
        assert_eq!(field(&by("bob"), "intercluster"), "f");
        assert_eq!(field(&by("carol"), "intercluster"), "t");
        assert_eq!(field(&by("carol"), "jid"), "carol@example.com");
        assert_eq!(field(&by("nomail"), "mailid"), "", "present but empty");
        assert!(resp.body.contains("<mailid/>"));
    }

    #[test]
    fn sql_where_order_skip_first_and_star() {
        let mut svc = service();
        let a = auth("axl", "secret");
        let r = rows(&post(
            &mut svc,
            &a,
            &sql("select e.userid from enduser e where e.mailid is not null order by userid"),
        ));
        let ids: Vec<_> = r.iter().map(|r| field(r, "userid")).collect();
        assert_eq!(ids, ["alice", "bob", "carol"]);
        let r = rows(&post(
            &mut svc,
            &a,
            &sql("SELECT SKIP 1 FIRST 1 userid FROM enduser ORDER BY userid;"),
        ));
        assert_eq!(field(&r[0], "userid"), "bob");
        assert_eq!(r.len(), 1);
        let r = rows(&post(
            &mut svc,
            &a,
            &sql("SELECT * FROM enduser WHERE userid = 'alice' AND intercluster = 'f'"),
        ));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].elements().count(), COLUMNS.len());
        let r = rows(&post(
            &mut svc,
            &a,
            &sql("SELECT userid FROM enduser WHERE mailid IS NULL"),
        ));
        assert_eq!(field(&r[0], "userid"), "nomail");
    }

    #[test]
    fn bad_sql_is_a_fault_with_the_informix_message() {
        let mut svc = service();
        let a = auth("axl", "secret");
        let f = fault_string(&post(&mut svc, &a, &sql("SELECT foo FROM enduser")));
        assert!(f.contains("Column (foo) not found"), "{f}");
        let f = fault_string(&post(&mut svc, &a, &sql("SELECT userid FROM device")));
        assert!(f.contains("table (device)"), "{f}");
        let f = fault_string(&post(
            &mut svc,
            &a,
            &sql("SELECT userid FROM enduser WHERE"),
        ));
        assert_eq!(f, SYNTAX);
        let f = fault_string(&post(&mut svc, &a, &sql("DELETE FROM enduser")));
        assert!(f.contains("Only SELECT"), "{f}");
        let f = fault_string(&post(
            &mut svc,
            &a,
            &sql("SELECT 'unterminated FROM enduser"),
        ));
        assert_eq!(f, SYNTAX);
        let f = fault_string(&post(
            &mut svc,
            &a,
            &soap("<ns:executeSQLQuery></ns:executeSQLQuery>"),
        ));
        assert!(f.contains("<sql>"), "{f}");
    }

    #[test]
    fn bad_credentials_get_401_with_basic_challenge() {
        let mut svc = service();
        let body = sql("SELECT userid FROM enduser");
        for headers in [
            auth("axl", "wrong"),
            auth("nobody", "secret"),
            vec![],
            vec![("Authorization".into(), "Basic !!!".into())],
            vec![("Authorization".into(), "Bearer abc".into())],
        ] {
            let r = post(&mut svc, &headers, &body);
            assert_eq!(r.status, 401);
            assert!(
                r.headers
                    .iter()
                    .any(|(k, v)| k == "WWW-Authenticate" && v.starts_with("Basic"))
            );
            assert!(!r.body.contains("secret"));
        }
        assert_eq!(svc.stats().unauthorized, 5);
    }

    #[test]
    fn account_without_axl_role_gets_a_soap_fault() {
        let mut svc = service();
        let r = post(
            &mut svc,
            &auth("norole", "secret"),
            &sql("SELECT userid FROM enduser"),
        );
        let f = fault_string(&r);
        assert!(f.contains("Standard AXL API Access"), "{f}");
        assert!(!r.body.contains("<row>"));
    }

    #[test]
    fn malformed_bodies_and_unknown_operations_are_faults() {
        let mut svc = service();
        let a = auth("axl", "secret");
        for body in [
            "",
            "not xml",
            "<soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/'>",
            "<Envelope/>",
            "<soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/'/>",
            "<soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/'>\
             <soapenv:Body/></soapenv:Envelope>",
            "<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>",
        ] {
            let f = fault_string(&post(&mut svc, &a, body));
            assert!(f.starts_with("Malformed SOAP request"), "{body}: {f}");
        }
        let f = fault_string(&post(
            &mut svc,
            &a,
            &soap("<ns:getPhone><name>x</name></ns:getPhone>"),
        ));
        assert!(f.contains("getPhone"), "{f}");
    }

    #[test]
    fn limits_methods_paths_and_stopped_service() {
        let mut svc = service();
        let a = auth("axl", "secret");
        let big = "x".repeat(AXL_BODY_BYTES_MAX + 1);
        assert_eq!(post(&mut svc, &a, &big).status, 413);
        let get = |svc: &mut AxlService, method: &str, path: &str| {
            svc.handle(AxlRequest {
                method,
                path,
                headers: &a,
                body: b"",
            })
            .status
        };
        assert_eq!(get(&mut svc, "GET", "/axl/"), 200);
        assert_eq!(get(&mut svc, "PUT", "/axl/"), 405);
        assert_eq!(get(&mut svc, "POST", "/other"), 404);
        svc.set_stopped(true);
        assert!(svc.is_stopped());
        assert_eq!(
            post(&mut svc, &a, &sql("SELECT userid FROM enduser")).status,
            503
        );
        svc.set_stopped(false);
        assert_eq!(
            post(&mut svc, &a, &sql("SELECT userid FROM enduser")).status,
            200
        );
        assert_eq!(svc.stats().stopped, 1);
    }

    #[test]
    fn like_patterns() {
        assert!(like("imp-a-1", "%"));
        assert!(like("imp-a-1", "IMP-%"));
        assert!(like("imp-a-1", "%a%1"));
        assert!(!like("imp-a-1", "%b%"));
        assert!(like("imp-a-1", "imp-a-1"));
        assert!(!like("imp-a-1", "imp-a"));
    }

    /// Discovery pages through one query: the service builds its table once and slices every
    /// page from it (a table per page made setup quadratic in users), and the pages put
    /// together are the one unpaged answer, ties in the order kept as the directory has them.
    #[test]
    fn pages_are_slices_of_one_table_per_query_and_directory() {
        let mut svc = service();
        // Userids in reverse of JID order, some equal, so sorting and ties both matter.
        let users = (0..1000).map(|i| UserRecord {
            userid: format!("u{:03}", (999 - i) / 3),
            ..user(
                &format!("j{i:04}"),
                Some(&format!("j{i:04}@example.com")),
                "imp-a-1",
            )
        });
        svc.dir = Rc::new(Directory::new(users));
        let a = auth("axl", "secret");
        let cols = "userid, jid FROM enduser ORDER BY userid";
        let whole = rows(&post(&mut svc, &a, &sql(&format!("SELECT {cols}"))));
        assert_eq!(svc.tables_built(), 1);
        let mut paged = Vec::new();
        for page in 0..5 {
            let q = format!("SELECT SKIP {} FIRST 250 {cols}", page * 250);
            paged.extend(rows(&post(&mut svc, &a, &sql(&q))));
        }
        assert_eq!(
            svc.tables_built(),
            1,
            "every page sliced from the same table"
        );
        let ids = |r: &[Element]| -> Vec<(String, String)> {
            r.iter()
                .map(|r| (field(r, "userid"), field(r, "jid")))
                .collect()
        };
        assert_eq!(paged.len(), 1001, "1000 + carol (ICSA)");
        assert_eq!(ids(&paged), ids(&whole));
        assert_eq!(
            ids(&paged)[..3],
            [
                ("carol".to_string(), "carol@example.com".to_string()),
                ("u000".to_string(), "j0997@example.com".to_string()),
                ("u000".to_string(), "j0998@example.com".to_string()),
            ]
        );
        // Another condition is another table; a new directory is a new version.
        rows(&post(
            &mut svc,
            &a,
            &sql("SELECT userid FROM enduser WHERE mailid IS NULL"),
        ));
        assert_eq!(svc.tables_built(), 2);
        svc.dir = Rc::new(Directory::new([user("zed", None, "imp-a-1")]));
        let r = rows(&post(
            &mut svc,
            &a,
            &sql("SELECT userid FROM enduser WHERE mailid IS NULL"),
        ));
        assert_eq!(svc.tables_built(), 3);
        assert_eq!(field(&r[0], "userid"), "zed");
    }

    /// The connector's own request builders and parsers (`connector::core::directory`)
    /// against this service: discovery pages through every user and reads every field.
    #[test]
    fn connector_discovery_contract() {
        use connector::core::directory as d;
        let mut users: Vec<UserRecord> = (0..600)
            .map(|i| {
                let home = if i % 2 == 0 { "imp-a-1" } else { "imp-a-2" };
                let email = (i % 100 != 7).then(|| format!("u{i:03}@example.com"));
                user(&format!("u{i:03}"), email.as_deref(), home)
            })
            .collect();
        users.push(user("alice", Some("Alice@Example.com"), "imp-a-1"));
        let mut svc = service();
        svc.dir = Rc::new(Directory::new(users));
        let headers = vec![("Authorization".to_string(), d::basic_auth("axl", "secret"))];
        let nodes = d::parse_nodes(
            post(&mut svc, &headers, &d::list_process_node_request())
                .body
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].name, "imp-a-1");
        assert_eq!(nodes[0].version, "14.0");
        assert_eq!(nodes[0].prg_peer.as_deref(), Some("imp-a-2"));
        assert!(nodes[0].high_availability);
        // The administrator switches HA off on imp-a-1's PRG: the next discovery reads it.
        assert!(svc.set_prg_high_availability("imp-a-1", false));
        assert!(
            !svc.set_prg_high_availability("imp-b-1", false),
            "not listed"
        );
        let again = d::parse_nodes(
            post(&mut svc, &headers, &d::list_process_node_request())
                .body
                .as_bytes(),
        )
        .unwrap();
        assert!(!again[0].high_availability);
        assert!(again[1].high_availability, "only the node named changes");
        let mut all = Vec::new();
        let mut page = 0;
        loop {
            let resp = post(&mut svc, &headers, &d::users_page_request(page));
            assert_eq!(resp.status, 200, "{}", resp.body);
            let rows = d::parse_users(resp.body.as_bytes()).unwrap();
            let n = rows.len();
            all.extend(rows);
            if !d::more_pages(n, page) {
                break;
            }
            page += 1;
        }
        assert_eq!(all.len(), 602, "600 + alice + carol (ICSA)");
        assert_eq!(all.iter().filter(|u| u.email.is_none()).count(), 6);
        assert_eq!(all.iter().filter(|u| u.intercluster).count(), 1);
        let alice = all.iter().find(|u| u.userid == "alice").unwrap();
        assert_eq!(alice.email.as_deref(), Some("alice@example.com"));
        assert_eq!(&*alice.home, "imp-a-1");
        let no_role = vec![(
            "Authorization".to_string(),
            d::basic_auth("norole", "secret"),
        )];
        let err = d::parse_users(
            post(&mut svc, &no_role, &d::users_page_request(0))
                .body
                .as_bytes(),
        )
        .unwrap_err();
        assert!(matches!(err, d::AxlError::Fault(_)), "{err:?}");
    }

    proptest::proptest! {
        #[test]
        fn random_bodies_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut svc = service();
            let a = auth("axl", "secret");
            let r = svc.handle(AxlRequest { method: "POST", path: "/axl/", headers: &a, body: &body });
            proptest::prop_assert!(r.status == 500 || r.status == 200);
        }

        #[test]
        fn random_sql_never_panics(q in "[a-zA-Z0-9 ,*=';.%_]{0,80}") {
            let mut svc = service();
            let a = auth("axl", "secret");
            let r = post(&mut svc, &a, &sql(&q));
            proptest::prop_assert!(r.status == 500 || r.status == 200);
        }
    }
}
