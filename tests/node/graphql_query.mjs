// Enough of GraphQL's executable syntax (October 2021 spec, section 2) for the Rafiki double to
// read a query as a GraphQL server does: operations with variable definitions, fields with
// aliases and arguments, values of every kind. Fragments, directives and block strings are
// refused as "not supported by this double", never silently ignored.
export class QueryError extends Error {
  constructor (message, code) {
    super(message)
    this.code = code
  }
}

const syntax = (message) => new QueryError(`Syntax Error: ${message}`, 'GRAPHQL_PARSE_FAILED')
const unsupported = (what) => new QueryError(`${what} are not supported by this double`, 'GRAPHQL_PARSE_FAILED')

const PUNCTUATORS = new Set(['!', '$', '&', '(', ')', ':', '=', '@', '[', ']', '{', '|', '}'])
const NAME = /[_A-Za-z][_0-9A-Za-z]*/y
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y
const STRING = /"((?:[^"\\\n\r]|\\(?:["\\/bfnrt]|u[0-9A-Fa-f]{4}))*)"/y
// Ignored tokens (2.1.7): white space, line terminators, commas, comments, the BOM.
const IGNORED = /(?:[\s,\ufeff]|#[^\n\r]*)+/y

function tokenize (source) {
  const tokens = []
  let at = 0
  const sticky = (pattern) => {
    pattern.lastIndex = at
    return pattern.exec(source)
  }
  while (at < source.length) {
    let match = sticky(IGNORED)
    if (match) {
      at += match[0].length
      continue
    }
    if (source.startsWith('...', at)) {
      tokens.push({ kind: 'punct', value: '...' })
      at += 3
    } else if (PUNCTUATORS.has(source[at])) {
      tokens.push({ kind: 'punct', value: source[at] })
      at += 1
    } else if ((match = sticky(NAME))) {
      tokens.push({ kind: 'name', value: match[0] })
      at += match[0].length
    } else if ((match = sticky(NUMBER))) {
      const kind = match[1] || match[2] ? 'float' : 'int'
      tokens.push({ kind, value: match[0] })
      at += match[0].length
    } else if (source.startsWith('"""', at)) {
      throw unsupported('Block strings')
    } else if ((match = sticky(STRING))) {
      tokens.push({ kind: 'string', value: JSON.parse(`"${match[1]}"`) })
      at += match[0].length
    } else {
      throw syntax(`Unexpected character: ${JSON.stringify(source[at])}.`)
    }
  }
  tokens.push({ kind: 'eof', value: '<EOF>' })
  return tokens
}

class Parser {
  constructor (source) {
    this.tokens = tokenize(source)
    this.at = 0
  }

  peek (kind, value) {
    const token = this.tokens[this.at]
    return token.kind === kind && (value === undefined || token.value === value)
  }

  skip (kind, value) {
    if (!this.peek(kind, value)) return false
    this.at++
    return true
  }

  expect (kind, value) {
    const token = this.tokens[this.at]
    if (!this.peek(kind, value)) {
      const found = token.kind === 'eof' ? '<EOF>' : `"${token.value}"`
      const wanted = value === undefined ? kind[0].toUpperCase() + kind.slice(1) : `"${value}"`
      throw syntax(`Expected ${wanted}, found ${found}.`)
    }
    this.at++
    return token
  }

  document () {
    const operations = []
    do {
      if (this.peek('name', 'fragment')) throw unsupported('Fragments')
      operations.push(this.operation())
    } while (!this.peek('eof'))
    return operations
  }

  operation () {
    if (this.peek('punct', '{')) {
      return { type: 'query', name: null, variables: [], selections: this.selectionSet() }
    }
    const type = this.expect('name').value
    if (!['query', 'mutation', 'subscription'].includes(type)) {
      throw syntax(`Unexpected Name "${type}".`)
    }
    const name = this.peek('name') ? this.expect('name').value : null
    const variables = this.peek('punct', '(') ? this.variableDefinitions() : []
    this.noDirectives()
    return { type, name, variables, selections: this.selectionSet() }
  }

  variableDefinitions () {
    this.expect('punct', '(')
    const definitions = []
    do {
      this.expect('punct', '$')
      const name = this.expect('name').value
      this.expect('punct', ':')
      const type = this.type()
      const fallback = this.skip('punct', '=') ? this.value(true) : undefined
      definitions.push({ name, type, fallback })
    } while (!this.skip('punct', ')'))
    return definitions
  }

  type () {
    let type
    if (this.skip('punct', '[')) {
      type = { list: this.type() }
      this.expect('punct', ']')
    } else {
      type = { name: this.expect('name').value }
    }
    type.nonNull = this.skip('punct', '!')
    return type
  }

  noDirectives () {
    if (this.peek('punct', '@')) throw unsupported('Directives')
  }

  selectionSet () {
    this.expect('punct', '{')
    const selections = []
    do {
      if (this.peek('punct', '...')) throw unsupported('Fragments')
      let name = this.expect('name').value
      let alias = null
      if (this.skip('punct', ':')) {
        alias = name
        name = this.expect('name').value
      }
      const args = this.peek('punct', '(') ? this.arguments() : []
      this.noDirectives()
      const selections_ = this.peek('punct', '{') ? this.selectionSet() : null
      selections.push({ alias, name, args, selections: selections_ })
    } while (!this.skip('punct', '}'))
    return selections
  }

  arguments () {
    this.expect('punct', '(')
    const args = []
    do {
      const name = this.expect('name').value
      this.expect('punct', ':')
      args.push({ name, value: this.value(false) })
    } while (!this.skip('punct', ')'))
    return args
  }

  value (constant) {
    const token = this.tokens[this.at]
    if (token.kind === 'punct' && token.value === '$' && !constant) {
      this.at++
      return { variable: this.expect('name').value }
    }
    if (token.kind === 'int' || token.kind === 'float') {
      this.at++
      return { literal: Number(token.value), kind: token.kind === 'int' ? 'Int' : 'Float' }
    }
    if (token.kind === 'string') {
      this.at++
      return { literal: token.value, kind: 'String' }
    }
    if (token.kind === 'name') {
      this.at++
      if (token.value === 'true' || token.value === 'false') {
        return { literal: token.value === 'true', kind: 'Boolean' }
      }
      if (token.value === 'null') return { literal: null, kind: 'Null' }
      return { literal: token.value, kind: 'Enum' }
    }
    if (this.skip('punct', '[')) {
      const items = []
      while (!this.skip('punct', ']')) items.push(this.value(constant))
      return { list: items }
    }
    if (this.skip('punct', '{')) {
      const fields = []
      while (!this.skip('punct', '}')) {
        const name = this.expect('name').value
        this.expect('punct', ':')
        fields.push({ name, value: this.value(constant) })
      }
      return { object: fields }
    }
    const found = token.kind === 'eof' ? '<EOF>' : `"${token.value}"`
    throw syntax(`Unexpected ${found}.`)
  }
}

// The operations of a document: [{type, name, variables: [{name, type, fallback}], selections}],
// a selection being {alias, name, args: [{name, value}], selections | null}.
export function parseDocument (source) {
  return new Parser(source).document()
}

// The operation a request names (6.1 GetOperation), or a QueryError.
export function pickOperation (operations, operationName) {
  if (operationName === undefined || operationName === null) {
    if (operations.length === 1) return operations[0]
    throw new QueryError('Must provide operation name if query contains multiple operations.', 'OPERATION_RESOLUTION_FAILURE')
  }
  const found = operations.find((operation) => operation.name === operationName)
  if (!found) throw new QueryError(`Unknown operation named "${operationName}".`, 'OPERATION_RESOLUTION_FAILURE')
  return found
}

// Every variable a value refers to, by name.
export function variablesIn (value, into = []) {
  if (value.variable !== undefined) into.push(value.variable)
  for (const item of value.list ?? []) variablesIn(item, into)
  for (const field of value.object ?? []) variablesIn(field.value, into)
  return into
}

// The plain value of a parsed value, variables taken from `variables` (absent: undefined).
export function valueOf (value, variables) {
  if (value.variable !== undefined) return variables[value.variable]
  if (value.list !== undefined) return value.list.map((item) => valueOf(item, variables))
  if (value.object !== undefined) {
    return Object.fromEntries(value.object.map((field) => [field.name, valueOf(field.value, variables)]))
  }
  return value.literal
}

export function typeName (type) {
  const inner = type.list ? `[${typeName(type.list)}]` : type.name
  return type.nonNull ? `${inner}!` : inner
}
