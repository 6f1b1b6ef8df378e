//! Discovery through AXL and the connector's user directory (spec 22-26).
//!
//! At start (and at every restart, never otherwise: discovery is static, spec 22) the
//! connector asks each configured publisher for its nodes (`listProcessNode`) and its users
//! (`executeSQLQuery` over `enduser`, paged with `SKIP`/`FIRST` so each response stays small).
//! The publisher returns its own users and the intercluster users it learned through ICSA
//! (spec 23). Users are matched to Webex by mail ID, never by JID (spec 24); users without a
//! mail ID are skipped and counted; a mail ID homed on two clusters is a duplicate (spec 25).
//!
//! This module builds request bodies and parses responses; the driver does the HTTP.

use super::sorted::SortedCursor;
use crate::proto::xml::{Element, parse_document};
use base64::Engine as _;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// SOAP 1.1 envelope namespace.
pub const NS_SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// The AXL schema version the connector speaks.
pub const NS_AXL: &str = "http://www.cisco.com/AXL/API/14.0";
/// Rows per `executeSQLQuery` page: keeps each response far below the parser's per-element
/// limit (64 KiB) at about 150 bytes a row.
pub const SQL_PAGE_ROWS: usize = 250;
/// Pages fetched per publisher at most: 800 × 250 = 200,000 users, above the largest
/// organization (spec 4), so a misbehaving server cannot keep discovery looping.
pub const SQL_PAGES_MAX: usize = 800;
/// The role IM&P nodes carry in `listProcessNode`.
pub const ROLE_IMP: &str = "CUCM IM and Presence";

/// An IM&P node as discovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImpNodeInfo {
    /// Host name.
    pub name: String,
    /// Reported version (may be stale until a restart, spec 22).
    pub version: String,
    /// PRG peer, if paired.
    pub prg_peer: Option<String>,
    /// PRG high availability.
    pub high_availability: bool,
}

/// A row of `enduser`. The mail ID, JID and home node are shared strings: the node keeps the
/// rows and its [`Directory`] names each user by the same copies, and a Large node's
/// directory holds every user of the organization (issue 16, memory per user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxlUser {
    /// `userid`.
    pub userid: String,
    /// `mailid`, if set.
    pub email: Option<Arc<str>>,
    /// Bare JID.
    pub jid: Arc<str>,
    /// Home node host (one copy per node name in a page).
    pub home: Arc<str>,
    /// Learned from another cluster through ICSA.
    pub intercluster: bool,
}

/// What can go wrong talking AXL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AxlError {
    /// The body is not a SOAP envelope we understand.
    #[error("malformed AXL response: {0}")]
    Malformed(String),
    /// The server answered a SOAP fault (bad query, missing AXL role).
    #[error("AXL fault: {0}")]
    Fault(String),
}

fn envelope(op: &str, inner: &str) -> String {
    format!(
        "<?xml version='1.0' encoding='UTF-8'?><soapenv:Envelope xmlns:soapenv='{NS_SOAP_ENV}' \
         xmlns:ns='{NS_AXL}'><soapenv:Header/><soapenv:Body><ns:{op}>{inner}</ns:{op}>\
         </soapenv:Body></soapenv:Envelope>"
    )
}

/// The `listProcessNode` request for IM&P nodes.
pub fn list_process_node_request() -> String {
    envelope(
        "listProcessNode",
        &format!(
            "<searchCriteria><name>%</name><processNodeRole>{ROLE_IMP}</processNodeRole></searchCriteria>\
             <returnedTags><name/><processNodeRole/><version/><prgPeer/><prgHighAvailability/></returnedTags>"
        ),
    )
}

/// The `executeSQLQuery` request for one page of users (page 0 first).
pub fn users_page_request(page: usize) -> String {
    envelope(
        "executeSQLQuery",
        &format!(
            "<sql>SELECT SKIP {} FIRST {SQL_PAGE_ROWS} userid, mailid, jid, homenode, intercluster \
             FROM enduser ORDER BY userid</sql>",
            page * SQL_PAGE_ROWS
        ),
    )
}

/// The `Authorization` header value for HTTP basic auth.
pub fn basic_auth(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

/// The `<return>` element of a response, or the fault text.
fn response_return(body: &[u8]) -> Result<Element, AxlError> {
    let env = parse_document(body).map_err(|e| AxlError::Malformed(e.to_string()))?;
    let soap_body = env
        .elements()
        .find(|e| e.name == "Body")
        .ok_or_else(|| AxlError::Malformed("no soapenv:Body".into()))?;
    if let Some(fault) = soap_body.elements().find(|e| e.name == "Fault") {
        let text = fault
            .elements()
            .find(|e| e.name == "faultstring")
            .map(Element::text)
            .unwrap_or_else(|| "unknown fault".into());
        return Err(AxlError::Fault(text));
    }
    let op = soap_body
        .elements()
        .next()
        .ok_or_else(|| AxlError::Malformed("empty soapenv:Body".into()))?;
    op.elements()
        .find(|e| e.name == "return")
        .cloned()
        .ok_or_else(|| AxlError::Malformed(format!("no <return> in <{}>", op.name)))
}

fn field(el: &Element, name: &str) -> String {
    el.elements()
        .find(|e| e.name == name)
        .map(|e| e.text().trim().to_string())
        .unwrap_or_default()
}

/// Parses a `listProcessNode` response.
pub fn parse_nodes(body: &[u8]) -> Result<Vec<ImpNodeInfo>, AxlError> {
    let ret = response_return(body)?;
    Ok(ret
        .elements()
        .filter(|e| e.name == "processNode")
        .filter(|e| {
            let role = field(e, "processNodeRole");
            role.is_empty() || role == ROLE_IMP
        })
        .map(|e| ImpNodeInfo {
            name: field(e, "name"),
            version: field(e, "version"),
            prg_peer: Some(field(e, "prgPeer")).filter(|p| !p.is_empty()),
            high_availability: field(e, "prgHighAvailability") == "true",
        })
        .filter(|n| !n.name.is_empty())
        .collect())
}

/// Parses one `executeSQLQuery` page of users.
pub fn parse_users(body: &[u8]) -> Result<Vec<AxlUser>, AxlError> {
    let ret = response_return(body)?;
    let mut homes: BTreeMap<String, Arc<str>> = BTreeMap::new();
    Ok(ret
        .elements()
        .filter(|e| e.name == "row")
        .map(|r| {
            let home = field(r, "homenode");
            let home = homes
                .entry(home)
                .or_insert_with_key(|h| Arc::from(h.as_str()))
                .clone();
            AxlUser {
                userid: field(r, "userid"),
                email: Some(field(r, "mailid").to_ascii_lowercase())
                    .filter(|m| !m.is_empty())
                    .map(Arc::from),
                jid: Arc::from(field(r, "jid").to_ascii_lowercase()),
                home,
                intercluster: matches!(field(r, "intercluster").as_str(), "t" | "true" | "1"),
            }
        })
        .filter(|u| !u.userid.is_empty())
        .collect())
}

/// Whether another page must be fetched after one with `rows` rows.
pub fn more_pages(rows: usize, page: usize) -> bool {
    rows == SQL_PAGE_ROWS && page + 1 < SQL_PAGES_MAX
}

/// [`Directory::get`] for emails asked in ascending order ([`Directory::cursor`]).
pub struct DirCursor<'a> {
    dir: &'a Directory,
    cursor: SortedCursor<'a, Arc<str>, DirEntry>,
}

impl<'a> DirCursor<'a> {
    /// The entry for an email, as [`Directory::get`] answers.
    pub fn get(&mut self, email: &str) -> Option<&'a DirEntry> {
        match lower(email) {
            std::borrow::Cow::Borrowed(email) => self.cursor.get(email),
            // Out of the walk's order once lower-cased: looked up on its own.
            std::borrow::Cow::Owned(_) => self.dir.get(email),
        }
    }
}

/// A directory entry: a discoverable Hybrid Message user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// IM&P cluster (configured name) the user is homed on.
    pub cluster: Arc<str>,
    /// Bare JID.
    pub jid: Arc<str>,
    /// Home node host.
    pub home: Arc<str>,
}

/// The users known through discovery, by email. Every map names a user by the shared strings
/// of its [`AxlUser`] row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    by_email: BTreeMap<Arc<str>, DirEntry>,
    /// Every user with a mail ID, local or intercluster: email → bare JID, and back. Chat
    /// partners may be homed on clusters this connector does not serve.
    jid_of: BTreeMap<Arc<str>, Arc<str>>,
    email_of: BTreeMap<Arc<str>, Arc<str>>,
    /// Users homed on the configured clusters ("Users from connected IM&P clusters", spec 67).
    pub local_users: usize,
    /// Local plus intercluster users ("Users from all IM&P clusters (ICSA)", spec 68).
    pub all_users: usize,
    /// Users skipped because they have no mail ID (spec 24).
    pub without_email: usize,
    /// Mail IDs homed on more than one cluster (spec 25): not served.
    pub duplicates: BTreeSet<Arc<str>>,
    /// Every cluster each mail ID is homed on, sorted, without repeats, to report them all:
    /// the cloud shows a user homed on two clusters as "duplicate Mail ID" (spec 25). A list,
    /// not a set: nearly every user has one cluster, and a set's node is some 300 bytes.
    pub homes: BTreeMap<Arc<str>, Vec<Arc<str>>>,
}

/// `s` in ASCII lower case (keys are stored lower-cased), copied only when it has an upper-case
/// letter: lookups run for every stanza the connector handles, and nearly every key arrives
/// lower-cased already.
fn lower(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(s.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

impl Directory {
    /// Builds the directory from each configured cluster's users.
    pub fn build(clusters: &[(String, Vec<AxlUser>)]) -> Self {
        let mut d = Directory::default();
        let mut all = BTreeSet::new();
        for (cluster, users) in clusters {
            let cluster: Arc<str> = Arc::from(cluster.as_str());
            for u in users {
                all.insert(u.userid.as_str());
                if let Some(email) = &u.email {
                    d.jid_of.insert(email.clone(), u.jid.clone());
                    d.email_of.insert(u.jid.clone(), email.clone());
                }
                if u.intercluster {
                    continue;
                }
                d.local_users += 1;
                let Some(email) = &u.email else {
                    d.without_email += 1;
                    continue;
                };
                let homes = d.homes.entry(email.clone()).or_default();
                if let Err(at) = homes.binary_search(&cluster) {
                    homes.insert(at, cluster.clone());
                }
                let entry = DirEntry {
                    cluster: cluster.clone(),
                    jid: u.jid.clone(),
                    home: u.home.clone(),
                };
                if let Some(prev) = d.by_email.insert(email.clone(), entry)
                    && prev.cluster != cluster
                {
                    d.duplicates.insert(email.clone());
                }
            }
        }
        for dup in &d.duplicates {
            d.by_email.remove(dup);
        }
        d.all_users = all.len();
        d
    }

    /// The entry for an email (never a JID, spec 24).
    pub fn get(&self, email: &str) -> Option<&DirEntry> {
        self.by_email.get(&*lower(email))
    }

    /// [`Self::get`] for emails asked in ascending order, walking the directory once
    /// ([`SortedCursor`]): what a status page asks for every assigned user.
    pub fn cursor(&self) -> DirCursor<'_> {
        DirCursor {
            dir: self,
            cursor: SortedCursor::new(&self.by_email),
        }
    }

    /// The bare JID of any user with this mail ID (local or intercluster).
    pub fn jid_of(&self, email: &str) -> Option<&str> {
        self.jid_of.get(&*lower(email)).map(|j| &**j)
    }

    /// The mail ID of the user with this bare JID (local or intercluster).
    pub fn email_of(&self, bare_jid: &str) -> Option<&str> {
        self.email_of.get(&*lower(bare_jid)).map(|e| &**e)
    }

    /// Every servable user's email, sorted.
    pub fn emails(&self) -> impl Iterator<Item = &str> {
        self.by_email.keys().map(|e| &**e)
    }

    /// Number of servable users.
    pub fn len(&self) -> usize {
        self.by_email.len()
    }

    /// True when no user is servable (spec 68: both counts 0 means an AXL or config problem).
    pub fn is_empty(&self) -> bool {
        self.by_email.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrap(op: &str, ret: &str) -> Vec<u8> {
        format!(
            "<soapenv:Envelope xmlns:soapenv=\"{NS_SOAP_ENV}\"><soapenv:Body>\
             <ns:{op}Response xmlns:ns=\"{NS_AXL}\"><return>{ret}</return></ns:{op}Response>\
             </soapenv:Body></soapenv:Envelope>"
        )
        .into_bytes()
    }

    #[test]
    fn parses_nodes_and_users() {
        let nodes = wrap(
            "listProcessNode",
            "<processNode uuid='{1}'><name>imp-a-1</name><processNodeRole>CUCM IM and Presence</processNodeRole>\
             <version>14.0</version><prgPeer>imp-a-2</prgPeer><prgHighAvailability>true</prgHighAvailability></processNode>\
             <processNode><name>cucm-1</name><processNodeRole>CUCM Voice/Video</processNodeRole></processNode>",
        );
        let n = parse_nodes(&nodes).unwrap();
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].prg_peer.as_deref(), Some("imp-a-2"));
        assert!(n[0].high_availability);
        let users = wrap(
            "executeSQLQuery",
            "<row><userid>alice</userid><mailid>Alice@Example.com</mailid><jid>alice@example.com</jid>\
             <homenode>imp-a-1</homenode><intercluster>f</intercluster></row>\
             <row><userid>nomail</userid><mailid/><jid>nomail@example.com</jid><homenode>imp-a-2</homenode>\
             <intercluster>f</intercluster></row>",
        );
        let u = parse_users(&users).unwrap();
        assert_eq!(u[0].email.as_deref(), Some("alice@example.com"));
        assert_eq!(u[1].email, None);
    }

    #[test]
    fn faults_and_garbage_are_errors() {
        let fault = format!(
            "<soapenv:Envelope xmlns:soapenv=\"{NS_SOAP_ENV}\"><soapenv:Body><soapenv:Fault>\
             <faultcode>soapenv:Client</faultcode><faultstring>Access denied</faultstring>\
             </soapenv:Fault></soapenv:Body></soapenv:Envelope>"
        );
        assert_eq!(
            parse_users(fault.as_bytes()),
            Err(AxlError::Fault("Access denied".into()))
        );
        assert!(matches!(
            parse_nodes(b"<html>"),
            Err(AxlError::Malformed(_))
        ));
        assert!(matches!(parse_nodes(b""), Err(AxlError::Malformed(_))));
    }

    #[test]
    fn directory_counts_local_icsa_missing_and_duplicates() {
        let u = |id: &str, mail: Option<&str>, home: &str, ic: bool| AxlUser {
            userid: id.into(),
            email: mail.map(Into::into),
            jid: format!("{id}@x").into(),
            home: home.into(),
            intercluster: ic,
        };
        let a = vec![
            u("alice", Some("alice@x"), "imp-a-1", false),
            u("bob", None, "imp-a-1", false),
            u("carol", Some("carol@x"), "imp-b-1", true),
            u("dup", Some("dup@x"), "imp-a-2", false),
        ];
        let b = vec![
            u("carol", Some("carol@x"), "imp-b-1", false),
            u("dup2", Some("dup@x"), "imp-b-1", false),
        ];
        let d = Directory::build(&[("a".into(), a), ("b".into(), b)]);
        assert_eq!(d.local_users, 5);
        assert_eq!(d.all_users, 5);
        assert_eq!(d.without_email, 1);
        assert!(d.duplicates.contains("dup@x"));
        assert!(d.get("dup@x").is_none());
        assert_eq!(&*d.get("Carol@X").unwrap().cluster, "b");
        assert_eq!(d.len(), 2);
    }

    /// Issue 16: a node's directory names each user by the one copy of its mail ID and JID
    /// that its AXL row holds, and a page's rows share one copy of each home node's name.
    #[test]
    fn the_directory_shares_the_rows_strings() {
        let page = wrap(
            "executeSQLQuery",
            "<row><userid>alice</userid><mailid>alice@x</mailid><jid>alice@x</jid>\
             <homenode>imp-a-1</homenode><intercluster>f</intercluster></row>\
             <row><userid>bob</userid><mailid>bob@x</mailid><jid>bob@x</jid>\
             <homenode>imp-a-1</homenode><intercluster>f</intercluster></row>",
        );
        let rows = parse_users(&page).unwrap();
        assert!(Arc::ptr_eq(&rows[0].home, &rows[1].home));
        let d = Directory::build(&[("a".into(), rows.clone())]);
        let alice = &rows[0];
        let email = alice.email.as_ref().unwrap();
        let (key, entry) = d.by_email.get_key_value("alice@x").unwrap();
        assert!(Arc::ptr_eq(key, email) && Arc::ptr_eq(&entry.jid, &alice.jid));
        assert!(Arc::ptr_eq(&entry.home, &alice.home));
        assert!(Arc::ptr_eq(d.jid_of.get("alice@x").unwrap(), &alice.jid));
        assert!(Arc::ptr_eq(d.email_of.get("alice@x").unwrap(), email));
        // Homed on both clusters: a duplicate, reported under both, sorted, each once.
        let d = Directory::build(&[("b".into(), rows.clone()), ("a".into(), rows.clone())]);
        let homes: Vec<&str> = d.homes["alice@x"].iter().map(|c| &**c).collect();
        assert_eq!(homes, ["a", "b"]);
        assert!(d.duplicates.contains("alice@x") && d.get("alice@x").is_none());
        let again = Directory::build(&[("a".into(), [rows.clone(), rows].concat())]);
        let homes: Vec<&str> = again.homes["bob@x"].iter().map(|c| &**c).collect();
        assert_eq!(homes, ["a"], "the same cluster twice is one home");
    }

    #[test]
    fn requests_page_through_users() {
        assert!(users_page_request(2).contains("SKIP 500 FIRST 250"));
        assert!(more_pages(SQL_PAGE_ROWS, 0));
        assert!(!more_pages(10, 0));
        assert!(list_process_node_request().contains("<ns:listProcessNode>"));
        assert_eq!(basic_auth("a", "b"), "Basic YTpi");
    }
}
