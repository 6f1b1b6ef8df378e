//! The fake Cisco AXL Web Service of an IM&P publisher (TCP 8443, spec 16-17, 22-25).
//!
//! SOAP 1.1 over HTTP/1.1 with HTTP basic auth, as the connector uses it for discovery:
//!
//! - `POST /axl/` with `<soapenv:Envelope><soapenv:Body><ns:listProcessNode>` returns the
//!   cluster's nodes (`<return><processNode uuid=…><name/><description/><processNodeRole/>
//!   <version/><prgPeer/><prgHighAvailability/></processNode>…`). `processNodeRole` is
//!   `CUCM IM and Presence` for every node of the fake; `version`, `prgPeer` and
//!   `prgHighAvailability` are this project's extensions (real AXL reports them through other
//!   requests). `searchCriteria/name` (with `%` wildcards) and `searchCriteria/processNodeRole`
//!   filter; `returnedTags`, when present and not empty, selects the child tags returned.
//! - `executeSQLQuery` with `<sql>SELECT … FROM enduser …</sql>` returns
//!   `<return><row><userid/><mailid/>…</row>…</return>`. The `enduser` columns are `userid`,
//!   `mailid`, `jid`, `homenode` (host name of the user's home node), `intercluster` (`t` for
//!   users homed on another cluster and learned through ICSA, spec 23, else `f`), and
//!   `firstname`/`lastname` (always empty: names are not modelled). A user without a mail id
//!   has an empty `<mailid/>` (spec 24: the connector must skip them). The supported grammar is
//!   the small subset discovery needs: `SELECT [SKIP n] [FIRST m] (* | col, …) FROM enduser
//!   [alias] [WHERE cond [AND cond]…] [ORDER BY col]` where `cond` is `col = 'text'`,
//!   `col IS NULL` or `col IS NOT NULL`; keywords are case-insensitive, columns may carry an
//!   `alias.` prefix. Anything else is a SOAP fault carrying the Informix-style message real
//!   AXL returns.
//! - `GET /axl/` answers the "AXL Web Service is working" page (a health check).
//!
//! Failures: no or wrong credentials → 401 with `WWW-Authenticate: Basic`; an account without
//! "Standard AXL API Access" → SOAP fault (HTTP 500, spec 17); a malformed body, an unknown
//! operation or a bad query → SOAP fault; a body over [`AXL_BODY_BYTES_MAX`] → 413; the service
//! stopped on this node (spec 22) → 503. Nothing a peer sends can panic the service.
//!
//! ## Module map
//! - [`service`]: the sans-IO core ([`AxlService`]: request in, response out).
//! - [`sql`]: the SQL subset of `executeSQLQuery`.
//! - [`driver`]: [`serve_axl`], hyper's HTTP/1 server on any [`connector::io::net::Net`].

pub mod driver;
pub mod service;
pub mod sql;

pub use driver::serve_axl;
pub use service::{
    AXL_BODY_BYTES_MAX, AXL_HEADER_TIMEOUT, AXL_PORT, AXL_SQL_ROWS_MAX, AxlAccount, AxlNode,
    AxlRequest, AxlResponse, AxlService, AxlStats, COLUMNS, NS_AXL_DEFAULT, NS_SOAP_ENV, ROLE_IMP,
};
