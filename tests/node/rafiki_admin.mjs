// A double of Rafiki's backend Admin GraphQL API serving the webhookEvents query, with the checks
// Rafiki makes on every admin request:
//   * `tenant-id` names the tenant the signature is checked for;
//   * `signature: t=<unix ms>, v1=<hex HMAC-SHA256(secret, t + "." + canonicalize(body))>`, the
//     body being the parsed request JSON in RFC 8785 form (json-canonicalize, which Rafiki uses);
//   * t no more than 5 minutes from now (Rafiki's default adminApiSignatureTtlSeconds is 300; it
//     bounds the past only, this double both ways), and a signature seen before is refused.
// Refusals answer 401 with a JSON body. The query is then read as a GraphQL server reads it:
// syntax, fields and arguments checked against the schema's WebhookEvents types, variables
// defined, used and of the argument's type; only the fields asked for are answered.
//
// webhookEvents(first, after, last, before, sortOrder, filter: {type: {in}}): the control file's
// events, filtered by type, ordered by (createdAt, id) in sortOrder (DESC by default), paged as
// Rafiki pages: first defaults to 20 (`first || 20`), more than 100 (or less than 0) is a GraphQL
// error "Pagination index error" answered with 200. Cursors are opaque (base64url of
// [createdAt ms, id]) and positional, so a page boundary survives a change of the data.
//
// usage: node rafiki_admin.mjs CONTROL_FILE --secret SECRET --tenant TENANT_ID
// CONTROL_FILE: {"events": [{id, type, data, createdAt, tenantId?}], "behaviour"?, "redirect_to"?}
// (an event with another tenantId is not listed). Any path ending in /graphql serves the API.
// Prints {"port": N} once listening; GET /__stats answers the counts (double_server.mjs).
import { createHmac, timingSafeEqual } from 'node:crypto'
import { parseArgs } from 'node:util'
import { canonicalize } from 'json-canonicalize'
import { json, serveDouble } from './double_server.mjs'
import {
  QueryError, parseDocument, pickOperation, typeName, valueOf, variablesIn
} from './graphql_query.mjs'

const { values, positionals } = parseArgs({
  options: { secret: { type: 'string' }, tenant: { type: 'string' } },
  allowPositionals: true
})
if (positionals.length !== 1 || !values.secret || !values.tenant) {
  process.stderr.write('usage: node rafiki_admin.mjs CONTROL_FILE --secret SECRET --tenant TENANT_ID\n')
  process.exit(2)
}
const { secret, tenant } = values
const SIGNATURE_TTL_MS = 5 * 60 * 1000
const PAGE_DEFAULT = 20
const PAGE_MAX = 100

// Signatures accepted so far, until they would be stale anyway.
const seen = new Map()

function refusal (status, reason) {
  return { refuse: json(status, { message: status === 401 ? 'Unauthorized' : 'Bad Request', reason }), detail: reason }
}

function graphqlRefusal (error, status = 400) {
  return { refuse: json(status, { errors: [{ message: error.message, extensions: { code: error.code } }] }), detail: error.message }
}

function signatureProblem (header, body) {
  if (header === undefined) return 'no signature header'
  // Rafiki splits the header on ', ' and '=', and compares the hex digest as a string.
  const match = /^t=([0-9]+), v([0-9]+)=([0-9a-f]{64})$/.exec(header)
  if (!match) return 'malformed signature header'
  const [, timestamp, version, digest] = match
  if (version !== '1') return `signature version v${version} is not v1`
  const expected = createHmac('sha256', secret).update(`${timestamp}.${canonicalize(body)}`).digest()
  if (!timingSafeEqual(Buffer.from(digest, 'hex'), expected)) return 'signature does not match'
  const now = Date.now()
  if (Math.abs(now - Number(timestamp)) > SIGNATURE_TTL_MS) return 'signature timestamp is not within 5 minutes of now'
  for (const [known, until] of seen) if (until < now) seen.delete(known)
  if (seen.has(header)) return 'signature already used'
  seen.set(header, Number(timestamp) + SIGNATURE_TTL_MS)
  return null
}

// The part of the schema this double serves: object types (a field's type, null for a leaf),
// arguments, and input types.
const OBJECTS = {
  Query: { webhookEvents: 'WebhookEventsConnection' },
  WebhookEventsConnection: { edges: 'WebhookEventsEdge', pageInfo: 'PageInfo' },
  WebhookEventsEdge: { cursor: null, node: 'WebhookEvent' },
  WebhookEvent: { id: null, type: null, data: null, createdAt: null, tenantId: null },
  PageInfo: { endCursor: null, startCursor: null, hasNextPage: null, hasPreviousPage: null }
}
const named = (name, nonNull = false) => ({ name, nonNull })
const ARGUMENTS = {
  'Query.webhookEvents': {
    after: named('String'),
    before: named('String'),
    first: named('Int'),
    last: named('Int'),
    sortOrder: named('SortOrder'),
    filter: named('WebhookEventFilter')
  }
}
const INPUT_OBJECTS = {
  WebhookEventFilter: { type: named('FilterString') },
  FilterString: { in: { list: named('String', true), nonNull: false } }
}
const ENUMS = { SortOrder: ['ASC', 'DESC'] }
const SCALARS = {
  Int: (v) => Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31,
  String: (v) => typeof v === 'string',
  ID: (v) => typeof v === 'string' || Number.isInteger(v),
  Boolean: (v) => typeof v === 'boolean'
}
const knownType = (type) => type.list
  ? knownType(type.list)
  : type.name in SCALARS || type.name in ENUMS || type.name in INPUT_OBJECTS

const invalid = (message) => new QueryError(message, 'BAD_USER_INPUT')

// A JSON value (a variable's) coerced to an input type (spec 3.5, 3.9, 3.10), or QueryError.
function coerceValue (type, value, where) {
  if (value === null || value === undefined) {
    if (type.nonNull) throw invalid(`${where}: expected non-nullable type "${typeName(type)}" not to be null.`)
    return value
  }
  if (type.list) {
    return (Array.isArray(value) ? value : [value]).map((item) => coerceValue(type.list, item, where))
  }
  if (type.name in SCALARS) {
    if (!SCALARS[type.name](value)) throw invalid(`${where}: ${type.name} cannot represent ${JSON.stringify(value)}.`)
    return value
  }
  if (type.name in ENUMS) {
    if (!ENUMS[type.name].includes(value)) throw invalid(`${where}: value ${JSON.stringify(value)} does not exist in "${type.name}" enum.`)
    return value
  }
  const fields = INPUT_OBJECTS[type.name]
  if (typeof value !== 'object' || Array.isArray(value)) throw invalid(`${where}: expected type "${type.name}" to be an object.`)
  for (const name of Object.keys(value)) {
    if (!(name in fields)) throw invalid(`${where}: field "${name}" is not defined by type "${type.name}".`)
  }
  return Object.fromEntries(Object.entries(value).map(([name, item]) => [name, coerceValue(fields[name], item, `${where}.${name}`)]))
}

// A literal argument value coerced to an input type (5.6.1 Values of Correct Type); a variable in
// it takes its already coerced value.
function coerceLiteral (type, node, variables, where) {
  if (node.variable !== undefined) {
    const value = variables[node.variable]
    if (value === null && type.nonNull) throw invalid(`${where}: expected non-nullable type "${typeName(type)}" not to be null.`)
    return value
  }
  if (node.kind === 'Null') {
    if (type.nonNull) throw invalid(`${where}: expected non-nullable type "${typeName(type)}" not to be null.`)
    return null
  }
  if (type.list) return (node.list ?? [node]).map((item) => coerceLiteral(type.list, item, variables, where))
  const fail = () => invalid(`${where}: ${type.name} cannot represent a ${node.kind ?? (node.list ? 'list' : 'object')} value.`)
  if (type.name in SCALARS) {
    const kinds = { Int: ['Int'], String: ['String'], ID: ['String', 'Int'], Boolean: ['Boolean'] }[type.name]
    if (!kinds.includes(node.kind) || !SCALARS[type.name](node.literal)) throw fail()
    return type.name === 'ID' ? String(node.literal) : node.literal
  }
  if (type.name in ENUMS) {
    if (node.kind !== 'Enum' || !ENUMS[type.name].includes(node.literal)) throw fail()
    return node.literal
  }
  if (node.object === undefined) throw fail()
  const fields = INPUT_OBJECTS[type.name]
  const out = {}
  for (const field of node.object) {
    if (!(field.name in fields)) throw invalid(`${where}: field "${field.name}" is not defined by type "${type.name}".`)
    const value = coerceLiteral(fields[field.name], field.value, variables, `${where}.${field.name}`)
    if (value !== undefined) out[field.name] = value
  }
  return out
}

const validation = (message) => new QueryError(message, 'GRAPHQL_VALIDATION_FAILED')

// Fields exist on their type, leaves have no selection and objects have one, arguments are known
// (5.3, 5.4); collects each variable used, with the type its position expects.
function validateSelections (parent, selections, uses) {
  for (const selection of selections) {
    if (selection.name === '__typename') {
      if (selection.args.length || selection.selections) throw validation('__typename takes no arguments and no selection.')
      continue
    }
    const fields = OBJECTS[parent]
    if (!(selection.name in fields)) {
      throw validation(`Cannot query field "${selection.name}" on type "${parent}" (this double serves webhookEvents only).`)
    }
    const type = fields[selection.name]
    if (type === null && selection.selections) {
      throw validation(`Field "${selection.name}" must not have a selection since it has no subfields.`)
    }
    if (type !== null && !selection.selections) {
      throw validation(`Field "${selection.name}" of type "${type}" must have a selection of subfields. Did you mean "${selection.name} { ... }"?`)
    }
    const allowed = ARGUMENTS[`${parent}.${selection.name}`] ?? {}
    for (const arg of selection.args) {
      if (!(arg.name in allowed)) throw validation(`Unknown argument "${arg.name}" on field "${parent}.${selection.name}".`)
      // A variable straight in an argument must be of the argument's type (5.8.5); one nested in
      // an input object is checked when its value is coerced.
      if (arg.value.variable !== undefined) uses.push({ name: arg.value.variable, expects: allowed[arg.name] })
      else for (const name of variablesIn(arg.value)) uses.push({ name, expects: null })
    }
    if (type !== null) validateSelections(type, selection.selections, uses)
  }
}

function sameNamedType (a, b) {
  if (Boolean(a.list) !== Boolean(b.list)) return false
  return a.list ? sameNamedType(a.list, b.list) : a.name === b.name
}

// The request as a GraphQL server reads it: {fields: [{key, name, args, selections}], variables},
// or a QueryError.
function readOperation (request) {
  const operation = pickOperation(parseDocument(request.query), request.operationName)
  if (operation.type !== 'query') throw validation(`This double serves queries only, not a ${operation.type}.`)
  const uses = []
  validateSelections('Query', operation.selections, uses)
  const label = operation.name ? ` by operation "${operation.name}"` : ''
  const defined = new Map(operation.variables.map((definition) => [definition.name, definition]))
  for (const definition of operation.variables) {
    if (!knownType(definition.type)) throw validation(`Unknown type "${typeName(definition.type)}".`)
  }
  for (const use of uses) {
    const definition = defined.get(use.name)
    if (!definition) throw validation(`Variable "$${use.name}" is not defined${label}.`)
    if (use.expects && !sameNamedType(definition.type, use.expects)) {
      throw validation(`Variable "$${use.name}" of type "${typeName(definition.type)}" used in position expecting type "${typeName(use.expects)}".`)
    }
  }
  for (const name of defined.keys()) {
    if (!uses.some((use) => use.name === name)) throw validation(`Variable "$${name}" is never used${label}.`)
  }
  const given = request.variables ?? {}
  const variables = {}
  for (const definition of operation.variables) {
    let value = given[definition.name]
    if (value === undefined && definition.fallback !== undefined) value = valueOf(definition.fallback, {})
    if (value === undefined && definition.type.nonNull) {
      throw invalid(`Variable "$${definition.name}" of required type "${typeName(definition.type)}" was not provided.`)
    }
    variables[definition.name] = coerceValue(definition.type, value, `Variable "$${definition.name}"`)
  }
  // Each root field with its arguments' values (5.6.1: a literal of the wrong kind is invalid).
  const fields = operation.selections.map((selection) => {
    const allowed = ARGUMENTS[`Query.${selection.name}`] ?? {}
    const args = {}
    for (const arg of selection.args) {
      const value = coerceLiteral(allowed[arg.name], arg.value, variables, `Argument "${arg.name}"`)
      if (value !== undefined) args[arg.name] = value
    }
    return { key: selection.alias ?? selection.name, name: selection.name, args, selections: selection.selections }
  })
  return { fields, variables }
}

function check ({ method, path, headers, body }) {
  if (!path.endsWith('/graphql')) return refusal(404, `no route ${path}`)
  if (method !== 'POST') return refusal(405, `${method} not allowed: the Admin API takes POST`)
  if (!/^application\/json\s*(;|$)/i.test(headers['content-type'] ?? '')) {
    return refusal(400, 'Content-Type must be application/json')
  }
  let request
  try {
    request = JSON.parse(body.toString('utf8'))
  } catch {
    return refusal(400, 'the body is not JSON')
  }
  if (headers['tenant-id'] !== tenant) {
    return refusal(401, headers['tenant-id'] === undefined ? 'no tenant-id header' : `unknown tenant ${headers['tenant-id']}`)
  }
  const problem = signatureProblem(headers.signature, request)
  if (problem) return refusal(401, problem)
  // Apollo Server's checks of a POST body, then the document's.
  if (request === null || typeof request !== 'object' || Array.isArray(request)) {
    return graphqlRefusal(new QueryError('POST body must be a JSON object.', 'BAD_REQUEST'))
  }
  if (typeof request.query !== 'string' || request.query === '') {
    return graphqlRefusal(new QueryError('GraphQL operations must contain a non-empty `query`.', 'BAD_REQUEST'))
  }
  if (request.variables !== undefined && request.variables !== null &&
      (typeof request.variables !== 'object' || Array.isArray(request.variables))) {
    return graphqlRefusal(new QueryError('`variables` in a POST body should be provided as an object.', 'BAD_REQUEST'))
  }
  if (request.operationName !== undefined && request.operationName !== null && typeof request.operationName !== 'string') {
    return graphqlRefusal(new QueryError('`operationName` in a POST body must be a string if provided.', 'BAD_REQUEST'))
  }
  try {
    const read = readOperation(request)
    return { accept: read, detail: { operationName: request.operationName ?? null, variables: read.variables } }
  } catch (err) {
    if (err instanceof QueryError) return graphqlRefusal(err)
    throw err
  }
}

const encodeCursor = (event) => Buffer.from(JSON.stringify([event.at, event.id])).toString('base64url')

function decodeCursor (cursor) {
  try {
    const [at, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
    if (Number.isFinite(at) && typeof id === 'string') return { at, id }
  } catch {}
  throw new QueryError(`invalid cursor ${JSON.stringify(cursor)}`, 'BAD_USER_INPUT')
}

function compare (a, b) {
  if (a.at !== b.at) return a.at < b.at ? -1 : 1
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}

function listedEvents (control, filter) {
  const types = filter?.type?.in ?? null
  return (control.events ?? [])
    .filter((event) => event.tenantId === undefined || event.tenantId === tenant)
    .filter((event) => types === null || types.includes(event.type))
    .map((event) => {
      const at = Date.parse(event.createdAt)
      if (typeof event.id !== 'string' || Number.isNaN(at)) {
        throw new Error(`control file: an event needs a string id and an ISO 8601 createdAt: ${JSON.stringify(event)}`)
      }
      return { at, id: event.id, event }
    })
}

// Rafiki's getPage (shared/baseModel.ts) and getPageInfo: keyset pages over (createdAt, id).
function webhookEvents (args, control, endless) {
  if (args.before === undefined && args.last !== undefined && args.last !== null) {
    throw new QueryError("Can't paginate backwards from the start.", 'BAD_USER_INPUT')
  }
  const first = args.first || PAGE_DEFAULT
  const last = args.last || PAGE_DEFAULT
  if (first < 0 || first > PAGE_MAX || last < 0 || last > PAGE_MAX) {
    throw new QueryError('Pagination index error', 'BAD_USER_INPUT')
  }
  const sign = args.sortOrder === 'ASC' ? 1 : -1
  const ordered = listedEvents(control, args.filter).sort((a, b) => sign * compare(a, b))
  let page
  if (endless) {
    // One fresh event a page, created now, and always another page after it.
    const at = Date.now()
    const id = `endless-${endless.serial}-${at}`
    const type = args.filter?.type?.in?.[0] ?? 'incoming_payment.completed'
    page = [{ at, id, event: { id, type, data: { id }, createdAt: new Date(at).toISOString() } }]
    return connection(page, endless.serial > 1, true)
  }
  if (typeof args.after === 'string') {
    const cursor = decodeCursor(args.after)
    page = ordered.filter((item) => sign * compare(item, cursor) > 0).slice(0, first)
  } else if (typeof args.before === 'string') {
    const cursor = decodeCursor(args.before)
    page = ordered.filter((item) => sign * compare(item, cursor) < 0).slice(-last)
  } else {
    page = ordered.slice(0, first)
  }
  if (page.length === 0) return connection(page, false, false)
  const firstIndex = ordered.indexOf(page[0])
  const lastIndex = ordered.indexOf(page[page.length - 1])
  return connection(page, firstIndex > 0, lastIndex < ordered.length - 1)
}

function connection (page, hasPreviousPage, hasNextPage) {
  const edges = page.map((item) => ({
    cursor: encodeCursor(item),
    node: { ...item.event, tenantId: tenant }
  }))
  return {
    edges,
    pageInfo: {
      startCursor: edges.length ? edges[0].cursor : null,
      endCursor: edges.length ? edges[edges.length - 1].cursor : null,
      hasNextPage,
      hasPreviousPage
    }
  }
}

// The fields asked for, under their aliases, in the order asked.
function project (type, value, selections) {
  const out = {}
  for (const selection of selections) {
    const key = selection.alias ?? selection.name
    if (selection.name === '__typename') {
      out[key] = type
      continue
    }
    const fieldType = OBJECTS[type][selection.name]
    const field = value[selection.name]
    if (fieldType === null || field === null || field === undefined) out[key] = field ?? null
    else if (Array.isArray(field)) out[key] = field.map((item) => project(fieldType, item, selection.selections))
    else out[key] = project(fieldType, field, selection.selections)
  }
  return out
}

function answer ({ fields }, control, endless) {
  if (!fields.some((field) => field.name === 'webhookEvents')) {
    return { body: { errors: [{ message: 'the query asks for no webhookEvents: this double serves webhookEvents only' }], data: null } }
  }
  const data = {}
  let items = 0
  for (const field of fields) {
    if (field.name === '__typename') {
      data[field.key] = 'Query'
      continue
    }
    try {
      const result = webhookEvents(field.args, control, endless)
      items += result.edges.length
      data[field.key] = project('WebhookEventsConnection', result, field.selections)
    } catch (err) {
      if (!(err instanceof QueryError)) throw err
      // webhookEvents is non-null on Query: its error nulls the whole data (spec 6.4.4).
      return { body: { errors: [{ message: err.message, path: [field.key], extensions: { code: err.code } }], data: null } }
    }
  }
  return { body: { data }, items }
}

function error (status, message) {
  return { errors: [{ message }] }
}

serveDouble('rafiki_admin', positionals[0], {
  check,
  answer,
  error,
  paged: true,
  empty: { data: { webhookEvents: { edges: [], pageInfo: { startCursor: null, endCursor: null, hasNextPage: false, hasPreviousPage: false } } } },
  huge: {
    prefix: '{"data":{"webhookEvents":{"edges":[',
    item: (i) => ({
      cursor: Buffer.from(JSON.stringify([i, `huge-${i}`])).toString('base64url'),
      node: {
        id: `huge-${i}`,
        type: 'incoming_payment.completed',
        data: { id: `huge-${i}`, note: 'x'.repeat(900) },
        createdAt: new Date(0).toISOString()
      }
    }),
    suffix: '],"pageInfo":{"startCursor":null,"endCursor":null,"hasNextPage":false,"hasPreviousPage":false}}}}'
  }
})
