// vlmamba eval: answers to a LLaVA eval JSONL of questions about images (resumable, sharded over processes).
#include <cerrno>
#include <cstring>
#include <limits>

#include "commands.hpp"
#include "eval/jsonl.hpp"
#include "eval/progress.hpp"
#include "eval/shards.hpp"
#include "options.hpp"

namespace cli {
namespace eval {


struct EvalOpts {
    ModelFlags model;
    GenerationFlags gen;
    std::string questions, image_folder, out;
    int num_chunks = 0, chunk_idx = -1;
    bool merge = false, json_summary = false;
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
        if (!os.flush()) {
            const int e = errno;
            os.close();
            fs::remove(tmp);
            vlmamba::fail("eval", tmp.string(), ": write failed: ", std::strerror(e), " (", out.string(),
                          " left as it was)");
        }
    }
    fs::rename(tmp, out);
    std::fprintf(stderr, "eval: merged %zu answers from %zu shards into %s (%zu duplicates dropped",
                 order.size(), shards.size(), out.string().c_str(), a.duplicates);
    if (!o.questions.empty()) std::fprintf(stderr, ", %zu questions unanswered", missing);
    std::fprintf(stderr, ")\n");
}

inline void run_eval(const EvalOpts& o, const CLI::App& root) {
    if (o.merge) return merge_shards(o);
    if (o.model.dir.empty()) vlmamba::fail("eval", "expected -m DIR, got none");
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
        const vlmamba::Model m = load_model(o.model);
        load_s = load_t.seconds();
        if (!m.tokenizer()) vlmamba::fail("eval", o.model.dir, ": expected a tokenizer.json, got none");
        const std::string model_id = model_id_of(o.model.dir);
        vlmamba::Session s(m);
        Progress bar(todo.size(), label);
        // Questions about one image share the state after its prefix: it is computed once and restored.
        std::string last_image = "\n";
        std::optional<vlmamba::Session::Snapshot> image_state;
        for (std::size_t k = 0; k < todo.size(); ++k) {
            const Question& q = *todo[k];
            vlmamba::Result res;
            try {
                if (q.image != last_image) {
                    s.clear();
                    if (!q.image.empty()) {
                        vlmamba::Request prefix;
                        prefix.images = {vlmamba::ImageInput(fs::path(o.image_folder) / q.image)};
                        prefix.raw = true;
                        prefix.max_tokens = 0;
                        s.generate(prefix);
                    }
                    image_state = s.snapshot();
                    last_image = q.image;
                }
                s.restore(*image_state);
                vlmamba::Request r;
                r.prompt = q.text;
                o.gen.apply(r);
                r.sampling.seed = seed_for(o.gen.sampling.seed, q.key);
                res = s.generate(r);
            } catch (const std::exception& e) {
                last_image = "\n";
                vlmamba::fail("eval", where(o.questions, q.line), " (question_id ", q.id.dump(), "): ", e.what());
            }
            const std::string text = trim(m.tokenizer()->decode(res.ids, /*skip_special=*/true));
            const ojson a{{"question_id", q.id},         {"prompt", q.text},     {"text", text},
                          {"answer_id", answer_id(model_id, q.key, text)}, {"model_id", model_id},
                          {"metadata", ojson::object()}};
            const std::string line = a.dump(-1, ' ', true, ojson::error_handler_t::replace) + "\n";
            if (std::fwrite(line.data(), 1, line.size(), fp) != line.size() || std::fflush(fp) != 0)
                vlmamba::fail("eval", out.string(), ": write failed: ", std::strerror(errno),
                              " (the answers before it are kept; run again to resume)");
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

}  // namespace eval

void add_eval(CLI::App& app) {
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
    cmd->add_option("-m,--model", o->model.dir, "VL-Mamba directory (config.json, model.safetensors, tokenizer.json)")
        ->check(CLI::ExistingDirectory);
    cmd->add_option("--device", o->model.device, "cpu | cuda")->check(CLI::IsMember({"cpu", "cuda"}))
        ->capture_default_str();
    cmd->add_option("--chat-template", o->model.chat_template, "override the model's chat template");
    cmd->add_option("--questions,--question-file", o->questions, "questions JSONL: {question_id, image, text}")
        ->check(CLI::ExistingFile);
    cmd->add_option("--image-folder", o->image_folder, "directory the questions' image paths are relative to")
        ->check(CLI::ExistingDirectory);
    cmd->add_option("-o,--answers-file", o->out, "answers JSONL (appended; shards A.<i>_of_<N>.jsonl)")
        ->required();
    cmd->add_option("--num-chunks", o->num_chunks, "split the questions into N chunks (LLaVA's get_chunk)")
        ->check(CLI::Range(1, std::numeric_limits<int>::max()));
    cmd->add_option("--chunk-idx", o->chunk_idx, "the chunk this process answers, in [0, N)")
        ->check(CLI::Range(0, std::numeric_limits<int>::max()));
    cmd->add_flag("--merge", o->merge, "merge the shards A.<i>_of_<N>.jsonl into -o A.jsonl and exit");
    add_generation_flags(cmd, o->gen, 128, /*outputs=*/false);
    cmd->add_flag("--json", o->json_summary, "print a JSON summary (counts, seconds, images/s) to stdout");
    cmd->callback([o, &app] { eval::run_eval(*o, app); });
}

}  // namespace cli
