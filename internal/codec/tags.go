package codec

import (
	"reflect"
	"strings"
)

// tag is a parsed `msgpack:"..."` struct tag: a name and options, read
// the way msgpack/v5 reads them (it uses vmihailenco/tagparser/v2, whose
// grammar parseTag follows: comma-separated items, "key:value" options,
// single-quoted values with \' escapes, backslash escapes and balanced
// parentheses inside unquoted values).
type tag struct {
	name    string
	options map[string]string
}

func (t *tag) has(opt string) bool {
	_, ok := t.options[opt]
	return ok
}

// tagParser holds the parse state; its methods mirror tagparser's states.
type tagParser struct {
	s       string
	i       int
	t       tag
	hasName bool
	key     string
}

func parseTag(s string) tag {
	p := &tagParser{s: s}
	p.parseKey()
	return p.t
}

func (p *tagParser) valid() bool { return p.i < len(p.s) }

func (p *tagParser) read() byte {
	if p.valid() {
		c := p.s[p.i]
		p.i++
		return c
	}
	return 0
}

func (p *tagParser) peek() byte {
	if p.valid() {
		return p.s[p.i]
	}
	return 0
}

func (p *tagParser) skip(c byte) bool {
	if p.peek() == c {
		p.i++
		return true
	}
	return false
}

func (p *tagParser) set(key, value string) {
	key = strings.TrimSpace(key)
	value = strings.TrimSpace(value)
	if !p.hasName {
		p.hasName = true
		if key == "" {
			p.t.name = value
			return
		}
	}
	if p.t.options == nil {
		p.t.options = make(map[string]string)
	}
	if key == "" {
		p.t.options[value] = ""
	} else {
		p.t.options[key] = value
	}
}

// parseKey, parseValue and parseQuoted call each other in tail position;
// a tag is a short literal, so the recursion is shallow.
func (p *tagParser) parseKey() {
	p.key = ""
	var b []byte
	for p.valid() {
		c := p.read()
		switch c {
		case ',':
			p.skip(' ')
			p.set("", string(b))
			p.parseKey()
			return
		case ':':
			p.key = string(b)
			p.parseValue()
			return
		case '\'':
			p.parseQuoted()
			return
		default:
			b = append(b, c)
		}
	}
	if len(b) > 0 {
		p.set("", string(b))
	}
}

func (p *tagParser) parseValue() {
	if p.peek() == '\'' {
		p.skip('\'')
		p.parseQuoted()
		return
	}
	var b []byte
	open := 0 // parentheses open: a comma inside them is part of the value
	for p.valid() {
		c := p.read()
		switch {
		case c == '\\':
			c = p.read()
		case c == '(':
			open++
		case c == ')' && open > 0:
			open--
		case c == ',' && open == 0:
			p.skip(' ')
			p.set(p.key, string(b))
			p.parseKey()
			return
		}
		b = append(b, c)
	}
	p.set(p.key, string(b))
}

func (p *tagParser) parseQuoted() {
	var b []byte
	for p.valid() {
		j := strings.IndexByte(p.s[p.i:], '\'')
		if j < 0 {
			b = append(b, p.s[p.i:]...)
			p.i = len(p.s)
			break
		}
		seg := p.s[p.i : p.i+j]
		p.i += j + 1
		if len(seg) > 0 && seg[len(seg)-1] == '\\' {
			b = append(b, seg[:len(seg)-1]...)
			b = append(b, '\'')
			continue
		}
		b = append(b, seg...)
		break
	}
	p.set(p.key, string(b))
	if p.skip(',') {
		p.skip(' ')
	}
	p.parseKey()
}

// fieldTag returns the parsed msgpack tag of f.
func fieldTag(f reflect.StructField) tag {
	return parseTag(f.Tag.Get("msgpack"))
}
