// vlmamba score: exact-match accuracy of answers JSONL against ground truth, per question type.
#include "commands.hpp"
#include "eval/jsonl.hpp"
#include "eval/shards.hpp"

namespace cli {
namespace eval {
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
                          it == j.end() ? std::string("none") : vlmamba::detail::json_brief(*it));
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

void add_score(CLI::App& app) {

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

}  // namespace cli
