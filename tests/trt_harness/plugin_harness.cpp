/*
 * CPU harness for adapler's IPluginV3 plugins, TokenDrop and ContributionDrop (tests/test_trt_plugin_build.py).
 *
 * Compiled against real TensorRT headers, it plays the part of libnvinfer for the plugin library:
 * a fake plugin registry (this executable exports getPluginRegistry(), so the library's static
 * initializer registers into it when dlopen'ed, as with trtexec --staticPlugins), a fake
 * IExprBuilder that records symbolic output shapes, and a logger for getCreators/setLoggerFinder.
 * It drives the build-phase callbacks through the creator and prints what it observed as one JSON
 * object; the Python test holds the expectations. Nothing here runs a kernel or TensorRT itself.
 * What differs between the plugins (inputs, type cases, shape variants) is one OpSpec each, picked by
 * the creator's plugin name.
 *
 *   plugin_harness static|dyn path/to/libadapler_{token,contribution}_drop_trt[_dyn].so
 */
#include "NvInferRuntime.h"

#include <dlfcn.h>

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace
{

// ---------------------------------------------------------------------------------------------
// JSON output
// ---------------------------------------------------------------------------------------------
std::string quote(std::string const& s)
{
    std::string out = "\"";
    for (char c : s)
    {
        if (c == '"' || c == '\\') { out += '\\'; }
        out += (c == '\n') ? ' ' : c;
    }
    return out + "\"";
}

std::string join(std::vector<std::string> const& items)
{
    std::string out = "[";
    for (size_t i = 0; i < items.size(); ++i)
    {
        out += (i ? ", " : "") + items[i];
    }
    return out + "]";
}

std::string typeName(DataType t)
{
    switch (static_cast<int32_t>(t))
    {
    case 0: return "FLOAT";
    case 1: return "HALF";
    case 2: return "INT8";
    case 3: return "INT32";
    case 4: return "BOOL";
    case 5: return "UINT8";
    case 6: return "FP8";
    case 7: return "BF16";
    case 8: return "INT64";
    case 9: return "INT4";
    case 10: return "FP4";
    case 11: return "E8M0";
    default: return "DT" + std::to_string(static_cast<int32_t>(t));
    }
}

std::vector<DataType> allTypes()
{
    std::vector<DataType> types;
    for (int32_t i = 0; i < EnumMax<DataType>(); ++i)
    {
        types.push_back(static_cast<DataType>(i));
    }
    return types;
}

// ---------------------------------------------------------------------------------------------
// Fake libnvinfer pieces
// ---------------------------------------------------------------------------------------------
struct Logger : public ILogger
{
    std::vector<std::string> messages;
    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        messages.push_back(std::to_string(static_cast<int32_t>(severity)) + ": " + (msg ? msg : ""));
    }
};

struct LoggerFinder : public ILoggerFinder
{
    Logger logger;
    ILogger* findLogger() noexcept override { return &logger; }
};

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations" // 10.x still declares the IPluginCreator (V2) methods
class FakeRegistry : public IPluginRegistry
{
public:
    std::vector<std::pair<IPluginCreatorInterface*, std::string>> registered;

    bool registerCreator(IPluginCreatorInterface& creator, AsciiChar const* const ns) noexcept override
    {
        registered.emplace_back(&creator, ns != nullptr ? ns : "<null>");
        return true;
    }
    void setErrorRecorder(IErrorRecorder* const) noexcept override {}
    IErrorRecorder* getErrorRecorder() const noexcept override { return nullptr; }
    bool isParentSearchEnabled() const override { return false; }
    void setParentSearchEnabled(bool const) override {}
    PluginLibraryHandle loadLibrary(AsciiChar const*) noexcept override { return nullptr; }
    void deregisterLibrary(PluginLibraryHandle) noexcept override {}
    IPluginCreatorInterface* const* getAllCreators(int32_t* const n) const noexcept override { return (*n = 0, nullptr); }
    IPluginCreatorInterface* getCreator(AsciiChar const* const, AsciiChar const* const, AsciiChar const* const) noexcept override { return nullptr; }
    bool deregisterCreator(IPluginCreatorInterface const&) noexcept override { return false; }
    IPluginResource* acquirePluginResource(AsciiChar const*, IPluginResource*) noexcept override { return nullptr; }
    int32_t releasePluginResource(AsciiChar const*) noexcept override { return -1; }
#if NV_TENSORRT_MAJOR >= 11
    IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const n) noexcept override { return (*n = 0, nullptr); }
#else
    bool registerCreator(IPluginCreator&, AsciiChar const* const) noexcept override { return false; }
    IPluginCreator* const* getPluginCreatorList(int32_t* const n) const noexcept override { return (*n = 0, nullptr); }
    IPluginCreator* getPluginCreator(AsciiChar const* const, AsciiChar const* const, AsciiChar const* const) noexcept override { return nullptr; }
    bool deregisterCreator(IPluginCreator const&) noexcept override { return false; }
#endif
};
#pragma GCC diagnostic pop

FakeRegistry& registry()
{
    static FakeRegistry sRegistry;
    return sRegistry;
}

//! A symbolic dimension: a name ("B", "T"), a constant, or an operation on other expressions.
class SymImpl : public apiv::VDimensionExpr
{
public:
    SymImpl(std::string text, bool constant, int64_t value, bool size)
        : mText(std::move(text)), mConstant(constant), mValue(value), mSize(size)
    {
    }
    bool isConstant() const override { return mConstant; }
    int64_t getConstantValue() const override { return mConstant ? mValue : std::numeric_limits<int64_t>::min(); }
    bool isSizeTensor() const override { return mSize; }
    std::string mText;
    bool mConstant;
    int64_t mValue;
    bool mSize;
};

class Sym : public IDimensionExpr
{
public:
    explicit Sym(SymImpl* impl) { mImpl = impl; }
    ~Sym() noexcept override = default;
};

class BuilderImpl : public apiv::VExprBuilder
{
public:
    struct SizeDecl
    {
        int32_t index;
        std::string opt;
        std::string upper;
    };
    std::vector<SizeDecl> sizeDecls;

    IDimensionExpr const* symbol(std::string const& name) { return make(name, false, 0, false); }
    std::string text(IDimensionExpr const* e) const
    {
        auto it = mTexts.find(e);
        return it == mTexts.end() ? "<foreign>" : it->second->mText;
    }
    IDimensionExpr const* constant(int64_t value) override
    {
        return make(std::to_string(value), true, value, false);
    }
    IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& a, IDimensionExpr const& b) override
    {
        static char const* const kNames[] = {"sum", "prod", "max", "min", "sub", "eq", "less", "floor_div", "ceil_div"};
        auto const i = static_cast<int32_t>(op);
        std::string const name = (i >= 0 && i < 9) ? kNames[i] : "op" + std::to_string(i);
        return make(name + "(" + text(&a) + "," + text(&b) + ")", false, 0, false);
    }
    IDimensionExpr const* declareSizeTensor(int32_t index, IDimensionExpr const& opt, IDimensionExpr const& upper) override
    {
        sizeDecls.push_back({index, text(&opt), text(&upper)});
        return make("size" + std::to_string(index), false, 0, true);
    }

private:
    IDimensionExpr const* make(std::string text, bool constant, int64_t value, bool size)
    {
        mImpls.emplace_back(new SymImpl(std::move(text), constant, value, size));
        mSyms.emplace_back(new Sym(mImpls.back().get()));
        mTexts[mSyms.back().get()] = mImpls.back().get();
        return mSyms.back().get();
    }
    std::deque<std::unique_ptr<SymImpl>> mImpls;
    std::deque<std::unique_ptr<Sym>> mSyms;
    std::map<IDimensionExpr const*, SymImpl const*> mTexts;
};

class Builder : public IExprBuilder
{
public:
    explicit Builder(apiv::VExprBuilder* impl) { mImpl = impl; }
    ~Builder() noexcept override = default;
};

// ---------------------------------------------------------------------------------------------
// What each plugin is driven with
// ---------------------------------------------------------------------------------------------
struct TensorSpec
{
    std::vector<std::string> dims; // symbols ("B", "T") or integer constants ("1")
    DataType type;
};

struct OpSpec
{
    std::vector<TensorSpec> inputs;                                        // base case
    std::vector<DataType> outputs;                                         // base output types (formats)
    std::string kernelWorkspaceSymbol;                                     // the kernel's workspace function
    std::vector<std::pair<std::string, std::vector<TensorSpec>>> shapeVariants; // getOutputShapes inputs
    std::vector<std::pair<std::string, std::vector<DataType>>> typeCases;  // getOutputDataTypes inputs
    std::vector<std::pair<std::string, std::vector<DataType>>> formatBases; // inputs + outputs, LINEAR
};

std::vector<TensorSpec> with(std::vector<TensorSpec> specs, size_t i, std::vector<std::string> dims)
{
    specs[i].dims = std::move(dims);
    return specs;
}

OpSpec tokenDropSpec()
{
    DataType const F = DataType::kFLOAT, I64 = DataType::kINT64, I32 = DataType::kINT32, H = DataType::kHALF;
    OpSpec op;
    op.inputs = {{{"B", "T", "D"}, F}, {{"B", "T"}, F}, {{"B", "T"}, I64}, {{"B"}, F}};
    op.outputs = {F, I64, I64, I32};
    op.kernelWorkspaceSymbol = "adapler_token_drop_workspace_size";
    op.shapeVariants = {{"threshold_per_row", op.inputs}, {"threshold_broadcast", with(op.inputs, 3, {"1"})},
        {"hidden_rank2", with(op.inputs, 0, {"B", "T"})}};
    for (DataType t : allTypes())
    {
        op.typeCases.push_back({typeName(t), {t, F, I64, F}});
    }
    op.formatBases = {{"float", {F, F, I64, F, F, I64, I64, I32}}, {"half", {H, F, I64, F, H, I64, I64, I32}}};
    return op;
}

OpSpec contributionDropSpec()
{
    DataType const F = DataType::kFLOAT, I64 = DataType::kINT64, I32 = DataType::kINT32, H = DataType::kHALF;
    OpSpec op;
    op.inputs = {{{"B", "T", "D"}, F}, {{"B", "T", "H"}, F}, {{"H"}, F}, {{"B", "T"}, I64}, {{"1"}, F}};
    op.outputs = {F, I64, I64, I32};
    op.kernelWorkspaceSymbol = "adapler_contribution_drop_workspace_size";
    op.shapeVariants = {{"base", op.inputs}, {"hidden_rank2", with(op.inputs, 0, {"B", "T"})},
        {"cp_hidden_rank2", with(op.inputs, 1, {"B", "T"})}, {"eta_rank0", with(op.inputs, 4, {})}};
    for (DataType t : allTypes()) // hidden and cp_hidden of one type, either mask type
    {
        op.typeCases.push_back({typeName(t) + "/INT64", {t, t, F, I64, F}});
        op.typeCases.push_back({typeName(t) + "/INT32", {t, t, F, I32, F}});
    }
    op.typeCases.push_back({"cp_hidden_differs", {F, H, F, I64, F}});
    op.typeCases.push_back({"w2_half", {H, H, H, I64, F}});
    op.typeCases.push_back({"eta_half", {H, H, F, I64, H}});
    op.typeCases.push_back({"mask_bool", {F, F, F, DataType::kBOOL, F}});
    op.formatBases = {{"float", {F, F, F, I64, F, F, I64, I64, I32}}, {"half_int32", {H, H, F, I32, F, H, I32, I64, I32}}};
    return op;
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------
struct Field
{
    char const* name;
    std::string bytes;
    PluginFieldType type;
};

IPluginV3* create(IPluginCreatorV3One* creator, std::vector<Field> const& spec)
{
    std::vector<PluginField> fields;
    for (auto const& f : spec)
    {
        fields.emplace_back(f.name, f.bytes.data(), f.type, static_cast<int32_t>(f.bytes.size()));
    }
    PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.empty() ? nullptr : fields.data()};
    return creator->createPlugin("plugin_0", &fc, TensorRTPhase::kBUILD);
}

std::string object(std::vector<std::pair<std::string, std::string>> const& items)
{
    std::string out = "{";
    for (size_t i = 0; i < items.size(); ++i)
    {
        out += (i ? ", " : "") + quote(items[i].first) + ": " + items[i].second;
    }
    return out + "}";
}

std::string createCases(IPluginCreatorV3One* creator)
{
    int32_t const one = 1;
    std::string const oneBytes(reinterpret_cast<char const*>(&one), sizeof(one));
    // As onnx-tensorrt's loadFields passes string attributes: kCHAR, NUL-terminated, length = size + 1.
    std::vector<Field> const parser{{"plugin_version", std::string("1", 2), PluginFieldType::kCHAR},
        {"plugin_namespace", std::string("adapler", 8), PluginFieldType::kCHAR}};
    std::map<std::string, std::vector<Field>> cases{
        {"no_fields", {}},
        {"parser_fields", parser},
        {"python_api_fields", {{"plugin_version", "1", PluginFieldType::kCHAR},
                                  {"plugin_namespace", "adapler", PluginFieldType::kCHAR}}},
        {"unknown_field_ignored", {{"alpha", oneBytes, PluginFieldType::kINT32}, parser[0], parser[1]}},
        {"wrong_version", {{"plugin_version", std::string("2", 2), PluginFieldType::kCHAR}, parser[1]}},
        {"wrong_namespace", {parser[0], {"plugin_namespace", std::string("other", 6), PluginFieldType::kCHAR}}},
        {"version_prefix_only", {{"plugin_version", std::string("10", 3), PluginFieldType::kCHAR}}},
        {"version_not_a_string", {{"plugin_version", oneBytes, PluginFieldType::kINT32}}},
    };
    std::vector<std::pair<std::string, std::string>> items;
    for (auto const& c : cases)
    {
        IPluginV3* plugin = create(creator, c.second);
        items.push_back({c.first, plugin != nullptr ? "true" : "false"});
        delete plugin;
    }
    return object(items);
}

std::string outputTypes(IPluginV3OneBuild* build, OpSpec const& op)
{
    std::vector<std::pair<std::string, std::string>> items;
    for (auto const& c : op.typeCases)
    {
        std::vector<DataType> out(op.outputs.size());
        int32_t const rc = build->getOutputDataTypes(out.data(), static_cast<int32_t>(out.size()), c.second.data(),
            static_cast<int32_t>(c.second.size()));
        std::vector<std::string> names;
        for (DataType t : out) { names.push_back(quote(typeName(t))); }
        items.push_back({c.first, rc == 0 ? join(names) : "null"});
    }
    return object(items);
}

//! Symbolic output shapes for `inputs` (null when rejected); the size-tensor declarations into `sizeDecls`.
std::string shapes(IPluginV3OneBuild* build, OpSpec const& op, std::vector<TensorSpec> const& inputs,
    std::string& sizeDecls)
{
    BuilderImpl impl;
    Builder builder(&impl);
    std::vector<DimsExprs> in(inputs.size());
    for (size_t k = 0; k < inputs.size(); ++k)
    {
        in[k].nbDims = static_cast<int32_t>(inputs[k].dims.size());
        for (size_t j = 0; j < inputs[k].dims.size(); ++j)
        {
            std::string const& d = inputs[k].dims[j];
            in[k].d[j] = std::isdigit(static_cast<unsigned char>(d[0])) ? builder.constant(std::stoll(d)) : impl.symbol(d);
        }
    }
    std::vector<DimsExprs> out(op.outputs.size());
    int32_t const rc = build->getOutputShapes(in.data(), static_cast<int32_t>(in.size()), nullptr, 0, out.data(),
        static_cast<int32_t>(out.size()), builder);
    if (rc != 0) { return "null"; }
    std::vector<std::string> outs;
    for (auto const& o : out)
    {
        std::vector<std::string> dims;
        for (int32_t j = 0; j < o.nbDims; ++j)
        {
            dims.push_back(quote(impl.text(o.d[j])));
        }
        outs.push_back(join(dims));
    }
    std::vector<std::string> decls;
    for (auto const& d : impl.sizeDecls)
    {
        decls.push_back("{\"index\": " + std::to_string(d.index) + ", \"opt\": " + quote(d.opt)
            + ", \"upper\": " + quote(d.upper) + "}");
    }
    sizeDecls = join(decls);
    return join(outs);
}

//! Types supportsFormatCombination accepts at each position, every other position as in `base`.
std::string formats(IPluginV3OneBuild* build, OpSpec const& op, std::vector<DataType> const& base, TensorFormat format)
{
    size_t const n = base.size();
    std::vector<DynamicPluginTensorDesc> io(n);
    for (size_t i = 0; i < n; ++i)
    {
        io[i] = DynamicPluginTensorDesc{};
        io[i].desc.type = base[i];
        io[i].desc.format = TensorFormat::kLINEAR;
    }
    auto const nbIn = static_cast<int32_t>(op.inputs.size());
    auto const nbOut = static_cast<int32_t>(op.outputs.size());
    std::vector<std::string> perPos;
    for (size_t pos = 0; pos < n; ++pos)
    {
        std::vector<std::string> ok;
        std::vector<DynamicPluginTensorDesc> trial = io;
        for (DataType t : allTypes())
        {
            trial[pos].desc.type = t;
            trial[pos].desc.format = format;
            if (build->supportsFormatCombination(static_cast<int32_t>(pos), trial.data(), nbIn, nbOut))
            {
                ok.push_back(quote(typeName(t)));
            }
        }
        perPos.push_back(join(ok));
    }
    return join(perPos);
}

std::string workspace(IPluginV3OneBuild* build, OpSpec const& op, int64_t B, int64_t T, int64_t D)
{
    std::vector<DynamicPluginTensorDesc> in(op.inputs.size());
    std::vector<DynamicPluginTensorDesc> out(op.outputs.size());
    in[0].max.nbDims = 3;
    in[0].max.d[0] = B;
    in[0].max.d[1] = T;
    in[0].max.d[2] = D;
    return std::to_string(build->getWorkspaceSize(in.data(), static_cast<int32_t>(in.size()), out.data(),
        static_cast<int32_t>(out.size())));
}

} // namespace

extern "C" IPluginRegistry* getPluginRegistry() noexcept
{
    return &registry();
}

int main(int argc, char** argv)
{
    if (argc != 3 || (std::strcmp(argv[1], "static") != 0 && std::strcmp(argv[1], "dyn") != 0))
    {
        std::fprintf(stderr, "usage: %s static|dyn LIBRARY\n", argv[0]);
        return 2;
    }
    bool const dynamic = std::strcmp(argv[1], "dyn") == 0;
    void* lib = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr)
    {
        std::fprintf(stderr, "dlopen failed: %s\n", dlerror());
        return 3;
    }
    std::ostringstream js;
    js << "{\"trt_version\": " << quote(std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR));
    js << ", \"registered_on_load\": [";
    for (size_t i = 0; i < registry().registered.size(); ++i)
    {
        auto* c = static_cast<IPluginCreatorV3One*>(registry().registered[i].first);
        js << (i ? ", " : "") << "{\"name\": " << quote(c->getPluginName()) << ", \"version\": "
           << quote(c->getPluginVersion()) << ", \"namespace\": " << quote(c->getPluginNamespace())
           << ", \"registry_namespace\": " << quote(registry().registered[i].second) << "}";
    }
    js << "]";
    using GetCreators = IPluginCreatorInterface* const* (*) (int32_t&);
    using SetLoggerFinder = void (*)(ILoggerFinder*);
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
    auto setLoggerFinder = reinterpret_cast<SetLoggerFinder>(dlsym(lib, "setLoggerFinder"));
    js << ", \"exports_getCreators\": " << (getCreators ? "true" : "false");
    js << ", \"exports_setLoggerFinder\": " << (setLoggerFinder ? "true" : "false");

    static LoggerFinder finder;
    IPluginCreatorInterface* creatorIface = nullptr;
    if (dynamic)
    {
        if (getCreators == nullptr || setLoggerFinder == nullptr)
        {
            std::fprintf(stderr, "dyn library lacks getCreators/setLoggerFinder\n");
            return 4;
        }
        setLoggerFinder(&finder);
        int32_t n = -1;
        IPluginCreatorInterface* const* creators = getCreators(n);
        js << ", \"nb_creators\": " << n;
        creatorIface = (n >= 1 && creators != nullptr) ? creators[0] : nullptr;
    }
    else if (!registry().registered.empty()) { creatorIface = registry().registered[0].first; }
    if (creatorIface == nullptr)
    {
        std::printf("%s, \"creator\": null}\n", js.str().c_str());
        return 0;
    }
    InterfaceInfo const info = creatorIface->getInterfaceInfo();
    js << ", \"creator_interface\": [" << quote(info.kind) << ", " << info.major << ", " << info.minor << "]";
    auto* creator = static_cast<IPluginCreatorV3One*>(creatorIface);
    js << ", \"creator\": {\"name\": " << quote(creator->getPluginName()) << ", \"version\": "
       << quote(creator->getPluginVersion()) << ", \"namespace\": " << quote(creator->getPluginNamespace()) << "}";

    PluginFieldCollection const* names = creator->getFieldNames();
    std::vector<std::string> fieldNames;
    for (int32_t i = 0; names != nullptr && i < names->nbFields; ++i)
    {
        fieldNames.push_back("[" + quote(names->fields[i].name) + ", "
            + std::to_string(static_cast<int32_t>(names->fields[i].type)) + "]");
    }
    js << ", \"field_names\": " << join(fieldNames);
    js << ", \"create\": " << createCases(creator);

    std::string const v(std::string("1") + '\0');
    std::string const ns(std::string("adapler") + '\0');
    std::unique_ptr<IPluginV3> plugin(create(creator,
        {{"plugin_version", v, PluginFieldType::kCHAR}, {"plugin_namespace", ns, PluginFieldType::kCHAR}}));
    if (!plugin)
    {
        std::printf("%s, \"plugin\": null}\n", js.str().c_str());
        return 0;
    }
    auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    js << ", \"plugin\": {\"name\": " << quote(core->getPluginName()) << ", \"version\": "
       << quote(core->getPluginVersion()) << ", \"namespace\": " << quote(core->getPluginNamespace()) << "}";
    std::string const opName = core->getPluginName();
    if (opName != "TokenDrop" && opName != "ContributionDrop")
    {
        std::printf("%s, \"spec\": null}\n", js.str().c_str());
        return 0;
    }
    OpSpec const op = opName == "TokenDrop" ? tokenDropSpec() : contributionDropSpec();
    js << ", \"nb_outputs\": " << build->getNbOutputs();
    js << ", \"output_types\": " << outputTypes(build, op);

    std::string decls;
    std::vector<std::pair<std::string, std::string>> variants;
    for (size_t i = 0; i < op.shapeVariants.size(); ++i)
    {
        std::string d;
        variants.push_back({op.shapeVariants[i].first, shapes(build, op, op.shapeVariants[i].second, d)});
        if (i == 0) { decls = d; }
    }
    js << ", \"output_shapes\": " << object(variants);
    js << ", \"size_tensor_decls\": " << decls;

    std::vector<std::pair<std::string, std::string>> fmts;
    for (auto const& b : op.formatBases)
    {
        fmts.push_back({b.first, formats(build, op, b.second, TensorFormat::kLINEAR)});
    }
    fmts.push_back({"chw4", formats(build, op, op.formatBases[0].second, TensorFormat::kCHW4)});
    js << ", \"formats\": " << object(fmts);

    using KernelWorkspace = size_t (*)(int64_t, int64_t);
    auto kernelWorkspace = reinterpret_cast<KernelWorkspace>(dlsym(lib, op.kernelWorkspaceSymbol.c_str()));
    js << ", \"workspace\": [";
    int64_t const problems[3][3] = {{1, 128, 384}, {8, 512, 384}, {32, 77, 768}};
    for (int32_t i = 0; i < 3; ++i)
    {
        auto const& p = problems[i];
        js << (i ? ", " : "") << "{\"B\": " << p[0] << ", \"T\": " << p[1] << ", \"bytes\": "
           << workspace(build, op, p[0], p[1], p[2]) << ", \"kernel_bytes\": "
           << (kernelWorkspace ? std::to_string(kernelWorkspace(p[0], p[1])) : "null") << "}";
    }
    js << "]";

    auto const nbIn = static_cast<int32_t>(op.inputs.size());
    auto const nbOut = static_cast<int32_t>(op.outputs.size());
    std::vector<DynamicPluginTensorDesc> din(op.inputs.size());
    std::vector<DynamicPluginTensorDesc> dout(op.outputs.size());
    js << ", \"configure_rc\": [" << build->configurePlugin(din.data(), nbIn, dout.data(), nbOut) << ", "
       << build->configurePlugin(din.data(), nbIn - 1, dout.data(), nbOut) << "]";
    PluginFieldCollection const* ser = runtime->getFieldsToSerialize();
    js << ", \"serialized_fields\": " << (ser ? ser->nbFields : -1);
    std::unique_ptr<IPluginV3> clone(plugin->clone());
    std::unique_ptr<IPluginV3> attached(runtime->attachToContext(nullptr));
    js << ", \"clone_ok\": " << (clone ? "true" : "false") << ", \"attach_ok\": " << (attached ? "true" : "false");

    std::vector<std::string> logged;
    for (auto const& m : finder.logger.messages) { logged.push_back(quote(m)); }
    js << ", \"logged\": " << join(logged) << "}";
    std::printf("%s\n", js.str().c_str());
    return 0;
}
