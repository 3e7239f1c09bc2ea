// vlmamba eval and score: batch answers over LLaVA's eval JSONL (resumable, sharded over processes) and
// exact-match accuracy per question type (SPEC §8.3; docs/eval.md).
#pragma once
#include <sched.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "cmd_run.hpp"

namespace cli {

namespace eval {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

// ---------------------------------------------------------------------------------------------
// JSONL reading
// ---------------------------------------------------------------------------------------------

// question_id as a lookup key: a string as is, an integer as its decimal text (so 7 and "7" match).
inline std::string id_key(const json& id) { return id.is_string() ? id.get<std::string>() : id.dump(); }

inline std::string where(const fs::path& file, std::size_t line) { return file.string() + ":" + std::to_string(line); }

// Calls f(object, line_number, raw_line) for each non-blank line; a line that is not a JSON object is an error
// naming the file and line.
template <class F>
void for_each_jsonl(const fs::path& file, const char* op, F&& f) {
    std::ifstream in(file, std::ios::binary);
    if (!in) vlmamba::fail(op, file.string(), ": expected a readable JSONL file, got no such file");
    std::string line;
    std::size_t n = 0;
    while (std::getline(in, line)) {
        ++n;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos) continue;
        json j;
        try {
            j = json::parse(line);
        } catch (const json::exception& e) {
            vlmamba::fail(op, where(file, n), ": expected a JSON object, got a parse error: ", e.what());
        }
        if (!j.is_object()) vlmamba::fail(op, where(file, n), ": expected a JSON object, got ", j.type_name());
        f(j, n, line);
    }
}

// The question_id of one line: a string or an integer.
inline const json& require_id(const json& j, const fs::path& file, std::size_t line, const char* op) {
    const auto it = j.find("question_id");
    if (it == j.end() || !(it->is_string() || it->is_number_integer()))
        vlmamba::fail(op, where(file, line), ": expected \"question_id\" (a string or an integer), got ",
                      it == j.end() ? std::string("none") : it->dump());
    return *it;
}

inline std::string require_string(const json& j, const char* key, const fs::path& file, std::size_t line,
                                  const char* op) {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_string())
        vlmamba::fail(op, where(file, line), ": expected \"", key, "\" (a string), got ",
                      it == j.end() ? std::string("none") : it->dump());
    return it->get<std::string>();
}

struct Question {
    json id;            // as in the file (string or integer)
    std::string key;    // id_key(id)
    std::string image;  // relative to --image-folder; empty: text only
    std::string text;
    std::size_t line = 0;
};

// Reads and validates every line: {question_id, image, text}; question_ids must be unique.
inline std::vector<Question> read_questions(const fs::path& file) {
    std::vector<Question> qs;
    std::unordered_map<std::string, std::size_t> seen;
    for_each_jsonl(file, "eval", [&](const json& j, std::size_t n, const std::string&) {
        Question q;
        q.id = require_id(j, file, n, "eval");
        q.key = id_key(q.id);
        q.text = require_string(j, "text", file, n, "eval");
        if (j.contains("image") && !j["image"].is_null()) q.image = require_string(j, "image", file, n, "eval");
        q.line = n;
        const auto [it, fresh] = seen.emplace(q.key, n);
        if (!fresh)
            vlmamba::fail("eval", where(file, n), ": expected unique question_ids, got ", q.id.dump(),
                          " again (first on line ", it->second, ")");
        qs.push_back(std::move(q));
    });
    return qs;
}

// ---------------------------------------------------------------------------------------------
// Sharding
// ---------------------------------------------------------------------------------------------

// LLaVA's get_chunk: chunks of ceil(n / num_chunks) questions; chunk idx may be empty.
struct Chunk {
    std::size_t begin = 0, end = 0;
};

inline Chunk get_chunk(std::size_t n, int num_chunks, int idx) {
    if (n == 0) return {};
    const std::size_t size = (n + std::size_t(num_chunks) - 1) / std::size_t(num_chunks);
    const std::size_t b = std::min(n, size * std::size_t(idx));
    return {b, std::min(n, b + size)};
}

struct Rank {
    int idx = 0, size = 1;
    std::string source;  // the environment variable it came from; empty: flags or a single process
};

inline std::optional<long> env_int(const char* name) {
    const char* v = std::getenv(name);
    if (!v || !*v) return std::nullopt;
    char* end = nullptr;
    const long x = std::strtol(v, &end, 10);
    if (*end != '\0') vlmamba::fail("eval", "environment ", name, ": expected an integer, got '", v, "'");
    return x;
}

// The process's rank from MPI (Open MPI, PMI: MPICH, Intel MPI) or Slurm, if launched by one.
inline std::optional<Rank> rank_from_env() {
    static constexpr const char* pairs[][2] = {
        {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"}, {"PMI_RANK", "PMI_SIZE"}, {"SLURM_PROCID", "SLURM_NTASKS"}};
    for (const auto& [rank_var, size_var] : pairs) {
        const auto r = env_int(rank_var), s = env_int(size_var);
        if (!r || !s) continue;
        if (*s < 1 || *r < 0 || *r >= *s)
            vlmamba::fail("eval", "environment ", rank_var, "=", *r, " ", size_var, "=", *s,
                          ": expected 0 <= rank < size");
        return Rank{int(*r), int(*s), rank_var};
    }
    return std::nullopt;
}

// With several processes on one host and no explicit thread count, share the cores between them.
inline void share_cores(const CLI::App& root) {
    const CLI::Option* t = root.get_option_no_throw("--threads");
    if ((t && t->count() > 0) || std::getenv("VLMAMBA_THREADS") || std::getenv("OMP_NUM_THREADS")) return;
    std::optional<long> local = env_int("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (!local) local = env_int("MPI_LOCALNRANKS");
    if (!local || *local <= 1) return;
    const long all = long(std::max(1u, std::thread::hardware_concurrency()));
    cpu_set_t mask;
    const long mine = sched_getaffinity(0, sizeof mask, &mask) == 0 ? long(CPU_COUNT(&mask)) : all;
    // Bound by the launcher (Open MPI binds to a core for np <= 2): its cores are its own; else share them.
    vlmamba::set_num_threads(int(std::max(1L, mine < all ? mine : all / *local)));
}

// A.jsonl -> A.<i>_of_<N>.jsonl (next to A.jsonl).
inline fs::path shard_path(const fs::path& out, int idx, int n) {
    const std::string name =
        out.stem().string() + "." + std::to_string(idx) + "_of_" + std::to_string(n) + out.extension().string();
    return out.parent_path() / name;
}

// All shards A.<i>_of_<N>.jsonl of A.jsonl, in chunk order; none: empty. Shards of several N, or a missing
// shard, are errors.
inline std::vector<fs::path> find_shards(const fs::path& out, const char* op) {
    const fs::path dir = out.parent_path().empty() ? fs::path(".") : out.parent_path();
    const std::string stem = out.stem().string() + ".", ext = out.extension().string();
    std::map<int, std::set<int>> found;  // N -> chunk indices
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        const std::string name = e.path().filename().string();
        if (name.size() <= stem.size() + ext.size() || name.compare(0, stem.size(), stem) != 0 ||
            name.compare(name.size() - ext.size(), ext.size(), ext) != 0)
            continue;
        const std::string mid = name.substr(stem.size(), name.size() - stem.size() - ext.size());  // "i_of_N"
        const auto of = mid.find("_of_");
        auto digits = [](const std::string& s) {
            return !s.empty() && s.size() < 9 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
        };
        if (of == std::string::npos || !digits(mid.substr(0, of)) || !digits(mid.substr(of + 4))) continue;
        const int i = std::stoi(mid.substr(0, of)), n = std::stoi(mid.substr(of + 4));
        if (n >= 1 && i < n) found[n].insert(i);
    }
    if (found.empty()) return {};
    if (found.size() > 1) {
        std::string ns;
        for (const auto& [n, _] : found) ns += (ns.empty() ? "" : ", ") + std::to_string(n);
        vlmamba::fail(op, out.string(), ": expected shards of one chunk count, got shards of ", ns,
                      " chunks; remove the stale ones");
    }
    const int n = found.begin()->first;
    std::vector<fs::path> shards;
    for (int i = 0; i < n; ++i) {
        const fs::path p = shard_path(out, i, n);
        if (!found.begin()->second.count(i))
            vlmamba::fail(op, "expected shard ", i, " of ", n, " at ", p.string(), ", got no such file");
        shards.push_back(p);
    }
    return shards;
}

// An answers argument: the file itself, or, if it does not exist, its shards.
inline std::vector<fs::path> expand_answers(const fs::path& arg, const char* op) {
    if (fs::exists(arg)) return {arg};
    std::vector<fs::path> shards = find_shards(arg, op);
    if (shards.empty())
        vlmamba::fail(op, arg.string(), ": expected an answers file or its shards ",
                      shard_path(arg, 0, 2).filename().string(), ", ..., got neither");
    return shards;
}

// ---------------------------------------------------------------------------------------------
// Answers files
// ---------------------------------------------------------------------------------------------

// The question_ids already in an answers file (resume). A last line cut short by a killed run (no newline, not
// JSON) is removed; any other bad line is an error.
inline std::unordered_set<std::string> answered_ids(const fs::path& out) {
    std::unordered_set<std::string> ids;
    if (!fs::exists(out)) return ids;
    std::string text;
    {
        std::ifstream in(out, std::ios::binary);
        text.assign(std::istreambuf_iterator<char>(in), {});
    }
    if (!text.empty() && text.back() != '\n') {
        const std::size_t cut = text.rfind('\n') + 1;  // npos + 1 == 0
        const std::string tail = text.substr(cut);
        bool ok = true;
        try {
            ok = json::parse(tail).is_object();
        } catch (const json::exception&) {
            ok = false;
        }
        if (ok) {
            std::ofstream(out, std::ios::binary | std::ios::app) << '\n';
        } else {
            std::fprintf(stderr, "eval: %s: dropping an unfinished last line (%zu bytes) from an interrupted run\n",
                         out.string().c_str(), tail.size());
            fs::resize_file(out, cut);
        }
    }
    for_each_jsonl(out, "eval", [&](const json& j, std::size_t n, const std::string&) {
        ids.insert(id_key(require_id(j, out, n, "eval")));
    });
    return ids;
}

// Raw answer lines by question_id over several files, the first of each id kept.
struct AnswerSet {
    std::vector<std::string> keys;  // first-seen order
    std::unordered_map<std::string, std::string> line, text;
    std::size_t duplicates = 0;
};

inline AnswerSet read_answers(const std::vector<fs::path>& files, const char* op) {
    AnswerSet a;
    for (const fs::path& f : files) {
        for_each_jsonl(f, op, [&](const json& j, std::size_t n, const std::string& raw) {
            const std::string key = id_key(require_id(j, f, n, op));
            const std::string text = require_string(j, "text", f, n, op);
            if (!a.line.emplace(key, raw).second) {
                ++a.duplicates;
                if (a.text[key] != text)
                    std::fprintf(stderr, "%s: %s: question_id %s answered twice with different text; keeping the first\n",
                                 op, where(f, n).c_str(), key.c_str());
                return;
            }
            a.keys.push_back(key);
            a.text.emplace(key, text);
        });
    }
    return a;
}

// A stable answer_id (shortuuid's alphabet, 22 characters): two FNV-1a hashes of model, question and answer.
inline std::string answer_id(const std::string& model_id, const std::string& key, const std::string& text) {
    static constexpr char abc[] = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    const std::string s = model_id + '\x1f' + key + '\x1f' + text;
    std::string id;
    for (std::uint64_t h : {0xcbf29ce484222325ull, 0x84222325cbf29ce4ull}) {
        for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
        for (int k = 0; k < 11; ++k, h /= 57) id += abc[h % 57];
    }
    return id;
}

inline std::uint64_t seed_for(std::uint64_t base, const std::string& key) {
    std::uint64_t h = 0xcbf29ce484222325ull ^ base;
    for (unsigned char c : key) h = (h ^ c) * 0x100000001b3ull;
    return h;
}

inline std::string trim(std::string_view s) {
    const auto b = s.find_first_not_of(" \t\r\n\f\v");
    if (b == std::string_view::npos) return {};
    return std::string(s.substr(b, s.find_last_not_of(" \t\r\n\f\v") - b + 1));
}

inline std::string normalize(std::string_view s) {
    std::string t = trim(s);
    for (char& c : t) c = char(std::tolower(static_cast<unsigned char>(c)));
    return t;
}

inline std::string model_id_of(const fs::path& dir) {
    fs::path p = dir.lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    if (p.filename() == "." || p.filename().empty()) p = fs::absolute(p).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    return p.filename().string();
}

// ---------------------------------------------------------------------------------------------
// Progress on stderr: a redrawn bar on a terminal, else a line every few items
// ---------------------------------------------------------------------------------------------

class Progress {
public:
    Progress(std::size_t total, std::string label) : total_(total), label_(std::move(label)), tty_(isatty(2)) {
        every_ = std::clamp<std::size_t>(total / 20, 1, 50);
    }

    void update(std::size_t done) {
        const double now = t_.seconds();
        const bool last = done == total_;
        if (tty_) {
            if (!last && now - shown_ < 0.1) return;
            std::fprintf(stderr, "\r%s%s\033[K", label_.c_str(), line(done, now, true).c_str());
            if (last) std::fputc('\n', stderr);
        } else {
            if (!last && done % every_ != 0 && now - shown_ < 30) return;
            std::fprintf(stderr, "%s%s\n", label_.c_str(), line(done, now, false).c_str());
        }
        std::fflush(stderr);
        shown_ = now;
    }
    double seconds() const { return t_.seconds(); }

private:
    static std::string clock(double s) {
        const long t = long(s + 0.5);
        char b[32];
        std::snprintf(b, sizeof b, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
        return b;
    }
    std::string line(std::size_t done, double now, bool bar) const {
        const double rate = now > 0 ? double(done) / now : 0.0;
        const double frac = total_ ? double(done) / double(total_) : 1.0;
        std::string s;
        if (bar) {
            constexpr int width = 30;
            const int full = int(frac * width);
            s = "[" + std::string(std::size_t(full), '#') + std::string(std::size_t(width - full), '.') + "] ";
        }
        char b[160];
        std::snprintf(b, sizeof b, "%zu/%zu %3.0f%% | %.2f images/s | elapsed %s | ETA %s", done, total_, 100 * frac,
                      rate, clock(now).c_str(),
                      rate > 0 ? clock(double(total_ - done) / rate).c_str() : "?");
        return s + b;
    }
    std::size_t total_, every_;
    std::string label_;
    bool tty_;
    Timer t_;
    double shown_ = -1e9;
};

// ---------------------------------------------------------------------------------------------
// eval
// ---------------------------------------------------------------------------------------------

struct EvalOpts {
    std::string model, questions, image_folder, out;
    int num_chunks = 0, chunk_idx = -1;
    bool merge = false, json_summary = false;
    SamplingFlags f;
};

// Writes A.jsonl from its shards A.<i>_of_<N>.jsonl, de-duplicated by question_id; with --questions, in the
// questions' order, reporting unanswered ones.
inline void merge_shards(const EvalOpts& o) {
    const fs::path out = o.out;
    const std::vector<fs::path> shards = find_shards(out, "eval");
    if (shards.empty())
        vlmamba::fail("eval", "--merge: expected shards ", shard_path(out, 0, 2).string(), ", ... next to ",
                      out.string(), ", got none");
    const AnswerSet a = read_answers(shards, "eval");
    std::vector<std::string> order = a.keys;
    std::size_t missing = 0;
    if (!o.questions.empty()) {
        order.clear();
        for (const Question& q : read_questions(o.questions)) {
            if (a.line.count(q.key)) order.push_back(q.key);
            else ++missing;
        }
        if (order.size() != a.keys.size())
            std::fprintf(stderr, "eval: %zu answers have no question in %s; dropped\n", a.keys.size() - order.size(),
                         o.questions.c_str());
    }
    const fs::path tmp = out.string() + ".tmp";
    {
        std::ofstream os(tmp, std::ios::binary | std::ios::trunc);
        if (!os) vlmamba::fail("eval", tmp.string(), ": cannot open for writing");
        for (const std::string& k : order) os << a.line.at(k) << '\n';
        if (!os.flush()) vlmamba::fail("eval", tmp.string(), ": write failed");
    }
    fs::rename(tmp, out);
    std::fprintf(stderr, "eval: merged %zu answers from %zu shards into %s (%zu duplicates dropped",
                 order.size(), shards.size(), out.string().c_str(), a.duplicates);
    if (!o.questions.empty()) std::fprintf(stderr, ", %zu questions unanswered", missing);
    std::fprintf(stderr, ")\n");
}

inline void run_eval(const EvalOpts& o, const CLI::App& root) {
    if (o.merge) return merge_shards(o);
    if (o.model.empty()) vlmamba::fail("eval", "expected -m DIR, got none");
    if (o.questions.empty()) vlmamba::fail("eval", "expected --questions FILE, got none");
    if (o.image_folder.empty()) vlmamba::fail("eval", "expected --image-folder DIR, got none");

    // Which chunk: the flags, else the MPI/Slurm rank, else all.
    Rank r;
    if (o.num_chunks > 0) {
        r.size = o.num_chunks;
        r.idx = o.chunk_idx < 0 ? 0 : o.chunk_idx;
    } else if (o.chunk_idx >= 0) {
        vlmamba::fail("eval", "--chunk-idx needs --num-chunks, got --chunk-idx ", o.chunk_idx, " alone");
    } else if (auto env = rank_from_env()) {
        r = *env;
    }
    if (r.idx >= r.size)
        vlmamba::fail("eval", "expected --chunk-idx in [0, ", r.size, "), got ", r.idx);
    const fs::path out = r.size > 1 ? shard_path(o.out, r.idx, r.size) : fs::path(o.out);
    const std::string label = r.size > 1 ? "[" + std::to_string(r.idx) + "/" + std::to_string(r.size) + "] " : "";
    if (!r.source.empty())
        std::fprintf(stderr, "%srank %d of %d (from %s) -> %s\n", label.c_str(), r.idx, r.size, r.source.c_str(),
                     out.string().c_str());
    share_cores(root);

    const std::vector<Question> all = read_questions(o.questions);
    const Chunk c = get_chunk(all.size(), r.size, r.idx);
    const std::unordered_set<std::string> done = answered_ids(out);
    std::vector<const Question*> todo;
    for (std::size_t i = c.begin; i < c.end; ++i)
        if (!done.count(all[i].key)) todo.push_back(&all[i]);
    for (const Question* q : todo) {
        if (q->image.empty()) continue;
        const fs::path img = fs::path(o.image_folder) / q->image;
        if (!fs::is_regular_file(img))
            vlmamba::fail("eval", where(o.questions, q->line), ": image ", img.string(), ": no such file");
    }
    if (!out.parent_path().empty()) fs::create_directories(out.parent_path());
    std::FILE* fp = std::fopen(out.c_str(), "ab");
    if (!fp) vlmamba::fail("eval", out.string(), ": cannot open for appending");
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(fp, &std::fclose);
    const std::size_t skipped = (c.end - c.begin) - todo.size();
    std::fprintf(stderr, "%squestions %zu..%zu of %zu: %zu to answer, %zu already in %s\n", label.c_str(), c.begin,
                 c.end, all.size(), todo.size(), skipped, out.string().c_str());

    double load_s = 0, run_s = 0;
    if (!todo.empty()) {
        Timer load_t;
        const vlmamba::zoo::AnyVlMamba m = vlmamba::zoo::load(o.model);
        load_s = load_t.seconds();
        const auto& tok = m.tokenizer();
        if (!tok) vlmamba::fail("eval", o.model, ": expected a tokenizer.json, got none");
        const vlmamba::MambaLm& lm = m.language_model();
        const std::string model_id = model_id_of(o.model);
        const std::int64_t n_valid = std::min<std::int64_t>(tok->vocab_size(), lm.cfg.vocab_size);
        std::fprintf(stderr, "%sloaded %s (%s) in %.2f s\n", label.c_str(), o.model.c_str(), m.variant().c_str(),
                     load_s);
        const auto runner = make_runner(lm, o.f.device);
        const VisionRunner vision(m, o.f.device);
        Progress bar(todo.size(), label);
        std::string last_image;
        vlmamba::Tensor last_prefix;  // (L_v, d) of last_image: questions about one image share it
        for (std::size_t k = 0; k < todo.size(); ++k) {
            const Question& q = *todo[k];
            std::vector<vlmamba::Tensor> prefixes;
            std::vector<std::int32_t> prompt;
            GenerationResult g;
            try {
                if (!q.image.empty()) {
                    if (q.image != last_image) {
                        last_prefix =
                            vision.image_prefix(load_pixels_for(m, (fs::path(o.image_folder) / q.image).string()));
                        last_image = q.image;
                    }
                    prefixes.push_back(last_prefix);
                }
                prompt = tok->encode(vlmamba::apply_prompt_template(m.config().prompt_template, q.text));
                runner->reset();
                const vlmamba::Tensor lastl = runner->prefill(m.input_embeddings(prefixes, prompt));  // (1, V)
                SamplingFlags f = o.f;
                f.p.seed = seed_for(o.f.p.seed, q.key);
                auto step = [&](std::int32_t id) { return runner->step(id); };
                g = generate_tokens(lastl, step, f, nullptr, n_valid, lm.cfg.eos_token_id, prompt, false);
            } catch (const std::exception& e) {
                last_image.clear();
                vlmamba::fail("eval", where(o.questions, q.line), " (question_id ", q.id.dump(), "): ", e.what());
            }
            const std::string text = trim(tok->decode(g.ids, /*skip_special=*/true));
            const ojson a{{"question_id", q.id},         {"prompt", q.text},     {"text", text},
                          {"answer_id", answer_id(model_id, q.key, text)}, {"model_id", model_id},
                          {"metadata", ojson::object()}};
            const std::string line = a.dump(-1, ' ', true, ojson::error_handler_t::replace) + "\n";
            if (std::fwrite(line.data(), 1, line.size(), fp) != line.size() || std::fflush(fp) != 0)
                vlmamba::fail("eval", out.string(), ": write failed");
            bar.update(k + 1);
        }
        run_s = bar.seconds();
    }
    const double rate = run_s > 0 ? double(todo.size()) / run_s : 0.0;
    std::fprintf(stderr, "%sanswered %zu questions in %.2f s (%.2f images/s), skipped %zu; wrote %s\n", label.c_str(),
                 todo.size(), run_s, rate, skipped, out.string().c_str());
    if (o.json_summary) {
        const json s{{"answers_file", out.string()}, {"chunk_idx", r.idx},      {"num_chunks", r.size},
                     {"questions", c.end - c.begin}, {"answered", todo.size()}, {"skipped", skipped},
                     {"load_s", load_s},             {"eval_s", run_s},         {"images_per_s", rate},
                     {"peak_rss_mib", peak_rss_mib()}};
        std::printf("%s\n", s.dump().c_str());
    }
}

// ---------------------------------------------------------------------------------------------
// score
// ---------------------------------------------------------------------------------------------

struct ScoreOpts {
    std::vector<std::string> answers;
    std::string gt;
    bool json_out = false;
};

inline void run_score(const ScoreOpts& o) {
    std::vector<fs::path> files;
    for (const std::string& a : o.answers)
        for (const fs::path& f : expand_answers(a, "score")) files.push_back(f);
    const AnswerSet ans = read_answers(files, "score");

    struct Tally {
        std::size_t n = 0, correct = 0;
    };
    std::map<std::string, Tally> by_type;
    Tally all;
    std::size_t missing = 0;
    std::unordered_set<std::string> gt_keys;
    const fs::path gt = o.gt;
    for_each_jsonl(gt, "score", [&](const json& j, std::size_t n, const std::string&) {
        const std::string key = id_key(require_id(j, gt, n, "score"));
        const auto it = j.find("answer");
        if (it == j.end() || !(it->is_string() || it->is_number()))
            vlmamba::fail("score", where(gt, n), ": expected \"answer\" (a string or a number), got ",
                          it == j.end() ? std::string("none") : it->dump());
        const std::string expected = it->is_string() ? it->get<std::string>() : it->dump();
        const std::string type = j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>() : "-";
        if (!gt_keys.insert(key).second)
            vlmamba::fail("score", where(gt, n), ": expected unique question_ids, got ", key, " again");
        const auto a = ans.text.find(key);
        const bool ok = a != ans.text.end() && normalize(a->second) == normalize(expected);
        if (a == ans.text.end()) ++missing;
        for (Tally* t : {&by_type[type], &all}) {
            ++t->n;
            t->correct += ok;
        }
    });
    std::size_t extra = 0;
    for (const std::string& k : ans.keys) extra += !gt_keys.count(k);
    auto frac = [](const Tally& t) { return t.n ? double(t.correct) / double(t.n) : 0.0; };
    auto pct = [&](const Tally& t) { return 100.0 * frac(t); };

    if (o.json_out) {
        json types = json::object();
        for (const auto& [name, t] : by_type)
            types[name] = {{"questions", t.n}, {"correct", t.correct}, {"accuracy", frac(t)}};
        const json s{{"overall", {{"questions", all.n}, {"correct", all.correct}, {"accuracy", frac(all)}}},
                     {"types", types},
                     {"missing", missing},
                     {"extra", extra},
                     {"answers_files", files.size()}};
        std::printf("%s\n", s.dump().c_str());
    } else {
        std::size_t w = 7;
        for (const auto& [name, _] : by_type) w = std::max(w, name.size());
        const int W = int(w);
        std::printf("%-*s %9s %9s %9s\n", W, "type", "questions", "correct", "accuracy");
        for (const auto& [name, t] : by_type)
            std::printf("%-*s %9zu %9zu %8.2f%%\n", W, name.c_str(), t.n, t.correct, pct(t));
        std::printf("%-*s %9zu %9zu %8.2f%%\n", W, "overall", all.n, all.correct, pct(all));
    }
    std::fprintf(stderr, "score: %zu answers from %zu files (%zu duplicates dropped); %zu questions unanswered, "
                 "%zu answers not in %s\n", ans.keys.size(), files.size(), ans.duplicates, missing, extra,
                 o.gt.c_str());
}

}  // namespace eval

inline void add_eval_commands(CLI::App& app) {
    {
        auto* cmd = app.add_subcommand("eval", "Answer a LLaVA eval JSONL of questions about images (resumable, sharded)");
        cmd->footer(
            "Examples:\n"
            "  vlmamba eval -m zoo/<model> --questions q.jsonl --image-folder images -o answers.jsonl\n"
            "  mpirun -np 4 vlmamba eval -m DIR --questions q.jsonl --image-folder images -o ans.jsonl\n"
            "  vlmamba eval --merge -o ans.jsonl --questions q.jsonl       (ans.<i>_of_4.jsonl -> ans.jsonl)\n"
            "  vlmamba score --answers ans.jsonl --gt gt.jsonl\n"
            "In: one JSON per line {question_id, image, text}. Out: {question_id, prompt, text, answer_id, model_id,\n"
            "metadata} per line, appended; question_ids already in the output are skipped (resume). Greedy unless\n"
            "--temp > 0. With N > 1 chunks (--num-chunks, or the rank and size of mpirun / srun from\n"
            "OMPI_COMM_WORLD_RANK/SIZE, PMI_RANK/SIZE, SLURM_PROCID/NTASKS) chunk i goes to A.<i>_of_<N>.jsonl.\n"
            "Progress goes to stderr; see docs/eval.md.");
        auto o = std::make_shared<eval::EvalOpts>();
        o->f.n_predict = 128;
        cmd->add_option("-m,--model", o->model, "VL-Mamba directory (config.json, model.safetensors, tokenizer.json)")
            ->check(CLI::ExistingDirectory);
        cmd->add_option("--questions,--question-file", o->questions, "questions JSONL: {question_id, image, text}")
            ->check(CLI::ExistingFile);
        cmd->add_option("--image-folder", o->image_folder, "directory the questions' image paths are relative to")
            ->check(CLI::ExistingDirectory);
        cmd->add_option("-o,--answers-file", o->out, "answers JSONL (appended; shards A.<i>_of_<N>.jsonl)")
            ->required();
        cmd->add_option("--num-chunks", o->num_chunks, "split the questions into N chunks (LLaVA's get_chunk)")
            ->check(CLI::PositiveNumber);
        cmd->add_option("--chunk-idx", o->chunk_idx, "the chunk this process answers, in [0, N)")
            ->check(CLI::NonNegativeNumber);
        cmd->add_flag("--merge", o->merge, "merge the shards A.<i>_of_<N>.jsonl into -o A.jsonl and exit");
        cmd->add_option("-n,--n-predict,--max-new-tokens", o->f.n_predict, "maximum tokens per answer")
            ->capture_default_str();
        cmd->add_option("--temp,--temperature", o->f.p.temperature, "temperature; 0 = greedy")->capture_default_str();
        cmd->add_option("--top-k", o->f.p.top_k, "keep the k most likely tokens; 0 = off")->capture_default_str();
        cmd->add_option("--top-p", o->f.p.top_p, "nucleus sampling threshold; 1 = off")->capture_default_str();
        cmd->add_option("--min-p", o->f.p.min_p, "drop tokens below min-p x the top probability; 0 = off")
            ->capture_default_str();
        cmd->add_option("--repeat-penalty", o->f.p.repeat_penalty, "penalty for tokens of the last 64; 1 = off")
            ->capture_default_str();
        cmd->add_option("-s,--seed", o->f.p.seed, "random seed (mixed with each question_id)")->capture_default_str();
        cmd->add_flag("--json", o->json_summary, "print a JSON summary (counts, seconds, images/s) to stdout");
        cmd->add_option("--device", o->f.device,
                        "cpu | cuda (the vision tower, the LM's prefill and decode on the GPU; the connector on the CPU)")
            ->check(CLI::IsMember({"cpu", "cuda"}))
            ->capture_default_str();
        cmd->callback([o, &app] { eval::run_eval(*o, app); });
    }
    {
        auto* cmd = app.add_subcommand("score", "Exact-match accuracy of answers JSONL against ground truth, per type");
        cmd->footer(
            "Examples:\n"
            "  vlmamba score --answers answers.jsonl --gt gt.jsonl\n"
            "  vlmamba score --answers a.0_of_2.jsonl a.1_of_2.jsonl --gt gt.jsonl --json\n"
            "GT lines: {question_id, answer, type}. An answer is right when it equals the GT answer after\n"
            "lower-casing and trimming. A missing answer counts as wrong. If an --answers file does not exist, its\n"
            "shards A.<i>_of_<N>.jsonl are read. Answers are de-duplicated by question_id (the first is kept).\n"
            "The table (or --json) goes to stdout; counts of missing and extra answers to stderr.");
        auto o = std::make_shared<eval::ScoreOpts>();
        cmd->add_option("--answers,--result-file", o->answers, "answers JSONL files or shard prefixes")
            ->required()->expected(1, -1);
        cmd->add_option("--gt", o->gt, "ground truth JSONL: {question_id, answer, type}")
            ->required()->check(CLI::ExistingFile);
        cmd->add_flag("--json", o->json_out, "print one JSON object instead of the table");
        cmd->callback([o] { eval::run_score(*o); });
    }
}

}  // namespace cli
