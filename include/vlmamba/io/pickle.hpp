// A restricted unpickler: reads the subset of Python's pickle format (protocols 2 to 4) that torch.save writes for
// state dicts and builds an inert tree of values. It never runs anything: a GLOBAL names a callable only if the
// caller's hooks allow that exact name (anything else is refused by name: "refused global posix.system"), and
// REDUCE, BINPERSID and BUILD are handed to the hooks, which build plain values or refuse.
//
// Opcodes read: PROTO FRAME STOP MARK; NONE NEWTRUE NEWFALSE BININT BININT1 BININT2 LONG1 BINFLOAT; BINUNICODE
// SHORT_BINUNICODE BINUNICODE8 BINBYTES SHORT_BINBYTES; EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST APPEND
// APPENDS EMPTY_DICT SETITEM SETITEMS; BINPUT LONG_BINPUT MEMOIZE BINGET LONG_BINGET; GLOBAL STACK_GLOBAL REDUCE
// BINPERSID BUILD. Every other opcode is refused by name (e.g. "opcode 'o' (OBJ) is outside the supported subset").
//
// Bounds (Limits): memo entries and indices, values on the stack, open MARKs, and container nesting depth, so a
// hostile pickle fails with a message instead of exhausting memory or the call stack. Values live in an Arena and
// refer to each other by pointer, so shared and even cyclic references (the memo) cost nothing and leak nothing.
#pragma once
#include <algorithm>
#include <bit>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "vlmamba/core/error.hpp"

namespace vlmamba::pickle {

enum class Kind : std::uint8_t { None, Bool, Int, BigInt, Float, Str, Bytes, Tuple, List, Dict, Global, Object };

struct Value {
    Kind kind = Kind::None;
    bool boolean = false;
    std::int64_t integer = 0;   // Int; Object: an id the hooks assign
    double real = 0;            // Float
    std::string text;           // Str, Bytes; BigInt: little-endian two's-complement bytes; Global: "module.name"
    std::vector<Value*> items;  // Tuple, List; Dict: key, value, key, value, ...
    int tag = 0;                // Object: a kind the hooks assign
    int depth = 1;              // container nesting, as far as construction order shows it
};

// Owns every value of one or more unpickles; pointers stay valid for its lifetime.
class Arena {
public:
    Value* make(Kind k) {
        values_.emplace_back();
        values_.back().kind = k;
        return &values_.back();
    }

private:
    std::deque<Value> values_;
};

// Thrown by hooks to refuse; the unpickler rethrows it as "[pickle] LABEL: <reason> at byte N".
struct Refused : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Hooks {
    // GLOBAL module.name: true makes it an inert Global value; false refuses it by name.
    std::function<bool(std::string_view module, std::string_view name)> allow_global;
    // REDUCE: `callable` is an allowed Global, `args` a Tuple. Returns the result or throws Refused.
    std::function<Value*(Arena&, const Value& callable, const Value& args)> reduce;
    // BINPERSID: the persistent id (any value) -> a value, or throws Refused. Unset: refused.
    std::function<Value*(Arena&, const Value& pid)> persistent_load;
    // BUILD (obj.__setstate__(state)): return to accept (the state is then ignored), throw Refused to refuse.
    std::function<void(const Value& obj, const Value& state)> build;
};

struct Limits {
    std::size_t max_memo = std::size_t(1) << 20;   // memo entries, and the largest memo index
    std::size_t max_stack = std::size_t(1) << 22;  // values on the stack
    std::size_t max_marks = 256;                   // open MARKs
    int max_depth = 64;                            // nesting of tuples, lists and dicts
};

// Unpickles one pickle starting at data[0]; `label` prefixes errors ("[pickle] LABEL: ... at byte N"). Sets
// *consumed to the offset just past STOP (several pickles may follow each other, as in torch's legacy format).
Value* unpickle(Arena& arena, const std::byte* data, std::size_t size, const std::string& label, const Hooks& hooks,
                std::size_t* consumed = nullptr, const Limits& limits = {});

// A Python-like one-line rendering (None, True, 3, 0.25, 'text', (1, 2), [..], {k: v}, <module.name>), cut to
// about `limit` characters; control and non-ASCII bytes of strings are escaped.
std::string repr(const Value& v, std::size_t limit = 80);

// "kind name" for messages: "a dict", "a list", "an int", ...
const char* kind_name(const Value& v);

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

namespace detail {

// Opcode names, for messages (the full table of Python's pickletools, so refusals name what they saw).
inline const char* opcode_name(unsigned char op) {
    switch (op) {
        case '(': return "MARK";            case '.': return "STOP";            case '0': return "POP";
        case '1': return "POP_MARK";        case '2': return "DUP";             case 'F': return "FLOAT";
        case 'I': return "INT";             case 'J': return "BININT";          case 'K': return "BININT1";
        case 'L': return "LONG";            case 'M': return "BININT2";         case 'N': return "NONE";
        case 'P': return "PERSID";          case 'Q': return "BINPERSID";       case 'R': return "REDUCE";
        case 'S': return "STRING";          case 'T': return "BINSTRING";       case 'U': return "SHORT_BINSTRING";
        case 'V': return "UNICODE";         case 'X': return "BINUNICODE";      case 'a': return "APPEND";
        case 'b': return "BUILD";           case 'c': return "GLOBAL";          case 'd': return "DICT";
        case '}': return "EMPTY_DICT";      case 'e': return "APPENDS";         case 'g': return "GET";
        case 'h': return "BINGET";          case 'i': return "INST";            case 'j': return "LONG_BINGET";
        case 'l': return "LIST";            case ']': return "EMPTY_LIST";      case 'o': return "OBJ";
        case 'p': return "PUT";             case 'q': return "BINPUT";          case 'r': return "LONG_BINPUT";
        case 's': return "SETITEM";         case 't': return "TUPLE";           case ')': return "EMPTY_TUPLE";
        case 'u': return "SETITEMS";        case 'G': return "BINFLOAT";        case 0x80: return "PROTO";
        case 0x81: return "NEWOBJ";         case 0x82: return "EXT1";           case 0x83: return "EXT2";
        case 0x84: return "EXT4";           case 0x85: return "TUPLE1";         case 0x86: return "TUPLE2";
        case 0x87: return "TUPLE3";         case 0x88: return "NEWTRUE";        case 0x89: return "NEWFALSE";
        case 0x8a: return "LONG1";          case 0x8b: return "LONG4";          case 'B': return "BINBYTES";
        case 'C': return "SHORT_BINBYTES";  case 0x8c: return "SHORT_BINUNICODE"; case 0x8d: return "BINUNICODE8";
        case 0x8e: return "BINBYTES8";      case 0x8f: return "EMPTY_SET";      case 0x90: return "ADDITEMS";
        case 0x91: return "FROZENSET";      case 0x92: return "NEWOBJ_EX";      case 0x93: return "STACK_GLOBAL";
        case 0x94: return "MEMOIZE";        case 0x95: return "FRAME";          case 0x96: return "BYTEARRAY8";
        case 0x97: return "NEXT_BUFFER";    case 0x98: return "READONLY_BUFFER";
        default: return nullptr;
    }
}

inline std::string opcode_desc(unsigned char op) {
    char buf[64];
    const char* name = opcode_name(op);
    if (name && op >= 0x20 && op < 0x7f)
        std::snprintf(buf, sizeof buf, "opcode '%c' (%s)", op, name);
    else if (name)
        std::snprintf(buf, sizeof buf, "opcode 0x%02x (%s)", op, name);
    else
        std::snprintf(buf, sizeof buf, "unknown opcode 0x%02x", op);
    return buf;
}

// A module or attribute name of a GLOBAL: printable ASCII, no spaces, at most 256 bytes.
inline bool plain_name(std::string_view s) {
    if (s.empty() || s.size() > 256) return false;
    for (unsigned char c : s)
        if (c <= 0x20 || c >= 0x7f) return false;
    return true;
}

inline std::string escape(std::string_view s, char quote_char) {
    std::string out(1, quote_char);
    for (unsigned char c : s) {
        if (c == '\\' || c == static_cast<unsigned char>(quote_char)) {
            out += '\\';
            out += char(c);
        } else if (c >= 0x20 && c < 0x7f) {
            out += char(c);
        } else {
            char b[8];
            std::snprintf(b, sizeof b, "\\x%02x", c);
            out += b;
        }
    }
    return out + quote_char;
}

class Unpickler {
public:
    Unpickler(Arena& arena, const std::byte* data, std::size_t size, const std::string& label, const Hooks& hooks,
              const Limits& limits)
        : arena_(arena), p_(reinterpret_cast<const unsigned char*>(data)), size_(size), label_(label),
          hooks_(hooks), limits_(limits) {}

    Value* run(std::size_t* consumed) {
        while (true) {
            op_pos_ = pos_;
            const unsigned char op = u8();
            try {
                if (op == '.') {
                    if (!marks_.empty()) bad("STOP with ", marks_.size(), " open MARK(s)");
                    if (stack_.size() != 1) bad("STOP with ", stack_.size(), " values on the stack, expected 1");
                    if (consumed) *consumed = pos_;
                    return stack_.back();
                }
                step(op);
            } catch (const Refused& r) {
                bad(r.what());
            }
        }
    }

private:
    template <class... A>
    [[noreturn]] void bad(A&&... parts) {
        fail("pickle", label_, ": ", std::forward<A>(parts)..., " at byte ", op_pos_);
    }

    void need(std::size_t n) {
        if (n > size_ - pos_) bad("truncated pickle: ", n, " bytes needed, ", size_ - pos_, " left");
    }
    unsigned char u8() {
        need(1);
        return p_[pos_++];
    }
    std::uint64_t uint_le(int n) {
        need(std::size_t(n));
        std::uint64_t v = 0;
        for (int i = n - 1; i >= 0; --i) v = v << 8 | p_[pos_ + std::size_t(i)];
        pos_ += std::size_t(n);
        return v;
    }
    std::string_view bytes(std::uint64_t n) {
        if (n > size_ - pos_) bad("truncated pickle: a string of ", n, " bytes, ", size_ - pos_, " left");
        std::string_view s(reinterpret_cast<const char*>(p_ + pos_), std::size_t(n));
        pos_ += std::size_t(n);
        return s;
    }
    std::string_view line() {
        const std::size_t start = pos_;
        while (true) {
            if (pos_ >= size_) bad("truncated pickle: GLOBAL without a newline");
            if (p_[pos_++] == '\n') break;
            if (pos_ - start > 256) bad("GLOBAL name longer than 256 bytes");
        }
        return {reinterpret_cast<const char*>(p_ + start), pos_ - 1 - start};
    }

    void push(Value* v) {
        if (stack_.size() >= limits_.max_stack) bad("the stack grows past ", limits_.max_stack, " values");
        stack_.push_back(v);
    }
    Value* pop(const char* what) {
        const std::size_t floor = marks_.empty() ? 0 : marks_.back();
        if (stack_.size() <= floor) bad(what, " needs a value, the stack is empty");
        Value* v = stack_.back();
        stack_.pop_back();
        return v;
    }
    Value* top(const char* what) {
        const std::size_t floor = marks_.empty() ? 0 : marks_.back();
        if (stack_.size() <= floor) bad(what, " needs a value, the stack is empty");
        return stack_.back();
    }
    // Pops everything above the last MARK (and the mark).
    std::vector<Value*> pop_mark(const char* what) {
        if (marks_.empty()) bad(what, " without a MARK");
        const std::size_t m = marks_.back();
        marks_.pop_back();
        std::vector<Value*> items(stack_.begin() + std::ptrdiff_t(m), stack_.end());
        stack_.resize(m);
        return items;
    }
    void nest(Value& parent, const Value& child) {
        parent.depth = std::max(parent.depth, child.depth + 1);
        if (parent.depth > limits_.max_depth) bad("containers nested deeper than ", limits_.max_depth, " levels");
    }
    Value* make(Kind k) { return arena_.make(k); }
    Value* tuple(const std::vector<Value*>& items) {
        Value* t = make(Kind::Tuple);
        t->items = items;
        for (const Value* c : items) nest(*t, *c);
        return t;
    }
    Value* str(std::string_view s, Kind k) {
        Value* v = make(k);
        v->text.assign(s);
        return v;
    }
    void memo_put(std::uint64_t key) {
        if (key >= limits_.max_memo) bad("memo index ", key, " exceeds the limit of ", limits_.max_memo);
        Value* v = top("memo put");
        auto [it, fresh] = memo_.emplace(std::uint32_t(key), v);
        if (!fresh) it->second = v;
    }
    void memo_get(std::uint64_t key) {
        auto it = memo_.find(std::uint32_t(key));
        if (key >= limits_.max_memo || it == memo_.end()) bad("memo index ", key, " is not defined");
        push(it->second);
    }
    void global(std::string_view module, std::string_view name) {
        if (!plain_name(module) || !plain_name(name))
            bad("GLOBAL with a malformed name ", escape(module, '\''), " ", escape(name, '\''));
        const std::string full = std::string(module) + "." + std::string(name);
        if (!hooks_.allow_global || !hooks_.allow_global(module, name)) {
            // Protocol 2 spells Python 3's builtins as __builtin__: name both.
            if (module == "__builtin__") bad("refused global builtins.", name, " (written as ", full, ")");
            bad("refused global ", full);
        }
        push(str(full, Kind::Global));
    }
    Value& container(const char* what, Kind want) {
        Value* c = top(what);
        if (c->kind != want) bad(what, " on ", kind_name(*c), ", expected ", want == Kind::List ? "a list" : "a dict");
        return *c;
    }
    void add_items(Value& c, const std::vector<Value*>& items, const char* what) {
        if (c.kind == Kind::Dict && items.size() % 2) bad(what, " with an odd number of items");
        for (Value* v : items) {
            c.items.push_back(v);
            nest(c, *v);
        }
    }

    void step(unsigned char op) {
        switch (op) {
            case 0x80: {  // PROTO
                const unsigned v = u8();
                if (v < 2 || v > 5) bad("pickle protocol ", v, ", expected 2 to 5");
                return;
            }
            case 0x95: uint_le(8); return;  // FRAME: a length hint only
            case '(':
                if (marks_.size() >= limits_.max_marks) bad("more than ", limits_.max_marks, " open MARKs");
                marks_.push_back(stack_.size());
                return;
            case 'N': push(make(Kind::None)); return;
            case 0x88:
            case 0x89: {
                Value* v = make(Kind::Bool);
                v->boolean = op == 0x88;
                push(v);
                return;
            }
            case 'J': {
                Value* v = make(Kind::Int);
                v->integer = std::int32_t(std::uint32_t(uint_le(4)));
                push(v);
                return;
            }
            case 'K':
            case 'M': {
                Value* v = make(Kind::Int);
                v->integer = std::int64_t(uint_le(op == 'K' ? 1 : 2));
                push(v);
                return;
            }
            case 0x8a: {  // LONG1: n bytes, little-endian two's complement
                const unsigned n = u8();
                const std::string_view b = bytes(n);
                if (n <= 8) {
                    std::uint64_t u = 0;
                    for (unsigned i = n; i-- > 0;) u = u << 8 | static_cast<unsigned char>(b[i]);
                    if (n > 0 && n < 8 && (static_cast<unsigned char>(b[n - 1]) & 0x80))
                        u |= ~std::uint64_t(0) << (8 * n);  // sign-extend
                    Value* v = make(Kind::Int);
                    v->integer = std::int64_t(u);
                    push(v);
                } else {
                    push(str(b, Kind::BigInt));
                }
                return;
            }
            case 'G': {  // BINFLOAT: big-endian IEEE double
                const std::uint64_t bits = [&] {
                    need(8);
                    std::uint64_t u = 0;
                    for (int i = 0; i < 8; ++i) u = u << 8 | p_[pos_ + std::size_t(i)];
                    pos_ += 8;
                    return u;
                }();
                Value* v = make(Kind::Float);
                v->real = std::bit_cast<double>(bits);
                push(v);
                return;
            }
            case 'X': push(str(bytes(uint_le(4)), Kind::Str)); return;
            case 0x8c: push(str(bytes(u8()), Kind::Str)); return;
            case 0x8d: push(str(bytes(uint_le(8)), Kind::Str)); return;
            case 'B': push(str(bytes(uint_le(4)), Kind::Bytes)); return;
            case 'C': push(str(bytes(u8()), Kind::Bytes)); return;
            case ')': push(make(Kind::Tuple)); return;
            case 't': push(tuple(pop_mark("TUPLE"))); return;
            case 0x85:
            case 0x86:
            case 0x87: {
                const std::size_t n = std::size_t(op - 0x84);
                std::vector<Value*> items(n);
                for (std::size_t i = n; i-- > 0;) items[i] = pop("TUPLE1/2/3");
                push(tuple(items));
                return;
            }
            case ']': push(make(Kind::List)); return;
            case '}': push(make(Kind::Dict)); return;
            case 'a': {
                Value* v = pop("APPEND");
                add_items(container("APPEND", Kind::List), {v}, "APPEND");
                return;
            }
            case 'e': {
                std::vector<Value*> items = pop_mark("APPENDS");
                add_items(container("APPENDS", Kind::List), items, "APPENDS");
                return;
            }
            case 's': {
                Value* v = pop("SETITEM");
                Value* k = pop("SETITEM");
                add_items(container("SETITEM", Kind::Dict), {k, v}, "SETITEM");
                return;
            }
            case 'u': {
                std::vector<Value*> items = pop_mark("SETITEMS");
                add_items(container("SETITEMS", Kind::Dict), items, "SETITEMS");
                return;
            }
            case 'q': memo_put(u8()); return;
            case 'r': memo_put(uint_le(4)); return;
            case 0x94: memo_put(memo_.size()); return;
            case 'h': memo_get(u8()); return;
            case 'j': memo_get(uint_le(4)); return;
            case 'c': {
                const std::string_view module = line();
                const std::string_view name = line();
                global(module, name);
                return;
            }
            case 0x93: {
                Value* name = pop("STACK_GLOBAL");
                Value* module = pop("STACK_GLOBAL");
                if (module->kind != Kind::Str || name->kind != Kind::Str)
                    bad("STACK_GLOBAL on ", kind_name(*module), " and ", kind_name(*name), ", expected two strings");
                global(module->text, name->text);
                return;
            }
            case 'R': {
                Value* args = pop("REDUCE");
                Value* callable = pop("REDUCE");
                if (callable->kind != Kind::Global) bad("REDUCE calls ", kind_name(*callable), ", expected a global");
                if (args->kind != Kind::Tuple) bad("REDUCE of ", callable->text, " with ", kind_name(*args),
                                                   " as arguments, expected a tuple");
                if (!hooks_.reduce) bad("refused call of ", callable->text);
                Value* r = hooks_.reduce(arena_, *callable, *args);
                if (!r) bad("refused call of ", callable->text);
                push(r);
                return;
            }
            case 'Q': {
                Value* pid = pop("BINPERSID");
                if (!hooks_.persistent_load) bad("refused persistent id ", repr(*pid));
                Value* r = hooks_.persistent_load(arena_, *pid);
                if (!r) bad("refused persistent id ", repr(*pid));
                push(r);
                return;
            }
            case 'b': {
                Value* state = pop("BUILD");
                Value* obj = top("BUILD");
                if (!hooks_.build) bad("refused BUILD of ", kind_name(*obj));
                hooks_.build(*obj, *state);
                return;
            }
            default: bad(opcode_desc(op), " is outside the supported subset");
        }
    }

    Arena& arena_;
    const unsigned char* p_;
    std::size_t size_, pos_ = 0, op_pos_ = 0;
    const std::string& label_;
    const Hooks& hooks_;
    const Limits& limits_;
    std::vector<Value*> stack_;
    std::vector<std::size_t> marks_;
    std::unordered_map<std::uint32_t, Value*> memo_;
};

inline void repr_into(const Value& v, std::string& out, std::size_t limit, int depth) {
    if (out.size() > limit) return;
    if (depth > 8) {
        out += "...";
        return;
    }
    auto seq = [&](const char* open, const char* close, std::size_t step) {
        out += open;
        for (std::size_t i = 0; i < v.items.size() && out.size() <= limit; i += step) {
            if (i) out += ", ";
            repr_into(*v.items[i], out, limit, depth + 1);
            if (step == 2 && i + 1 < v.items.size()) {
                out += ": ";
                repr_into(*v.items[i + 1], out, limit, depth + 1);
            }
        }
        if (v.kind == Kind::Tuple && v.items.size() == 1) out += ",";
        out += close;
    };
    switch (v.kind) {
        case Kind::None: out += "None"; break;
        case Kind::Bool: out += v.boolean ? "True" : "False"; break;
        case Kind::Int: out += std::to_string(v.integer); break;
        case Kind::BigInt: out += "<int of " + std::to_string(v.text.size()) + " bytes>"; break;
        case Kind::Float: {
            char buf[32];
            auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v.real);
            std::string s(buf, ec == std::errc() ? end : buf);
            if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // 1 -> 1.0, as Python prints it
            out += s;
            break;
        }
        case Kind::Str: out += escape(v.text, '\''); break;
        case Kind::Bytes: out += "b" + escape(v.text, '\''); break;
        case Kind::Tuple: seq("(", ")", 1); break;
        case Kind::List: seq("[", "]", 1); break;
        case Kind::Dict: seq("{", "}", 2); break;
        case Kind::Global: out += "<" + v.text + ">"; break;
        case Kind::Object: out += "<object>"; break;
    }
}

}  // namespace detail

inline Value* unpickle(Arena& arena, const std::byte* data, std::size_t size, const std::string& label,
                       const Hooks& hooks, std::size_t* consumed, const Limits& limits) {
    detail::Unpickler u(arena, data, size, label, hooks, limits);
    return u.run(consumed);
}

inline std::string repr(const Value& v, std::size_t limit) {
    std::string out;
    detail::repr_into(v, out, limit, 0);
    if (out.size() > limit) out = out.substr(0, limit) + "...";
    return out;
}

inline const char* kind_name(const Value& v) {
    switch (v.kind) {
        case Kind::None: return "None";
        case Kind::Bool: return "a bool";
        case Kind::Int:
        case Kind::BigInt: return "an int";
        case Kind::Float: return "a float";
        case Kind::Str: return "a string";
        case Kind::Bytes: return "bytes";
        case Kind::Tuple: return "a tuple";
        case Kind::List: return "a list";
        case Kind::Dict: return "a dict";
        case Kind::Global: return "a global";
        case Kind::Object: return "an object";
    }
    return "a value";
}

}  // namespace vlmamba::pickle
