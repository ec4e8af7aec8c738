//! UI language, chosen by path: Japanese at `/…`, English at `/en/…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ja,
    En,
}

/// Every UI string, per language.
pub struct Labels {
    pub html_lang: &'static str,
    pub prefix: &'static str,
    pub other_lang_name: &'static str,
    pub other_prefix: &'static str,
    pub dashboard: &'static str,
    pub search: &'static str,
    pub tagline: &'static str,
    pub mentions_per_day: &'static str,
    pub total: &'static str,
    pub search_placeholder: &'static str,
    pub all_services: &'static str,
    pub results: &'static str,
    pub no_results: &'static str,
    pub prev: &'static str,
    pub next: &'static str,
    pub from: &'static str,
    pub to: &'static str,
    pub show: &'static str,
    pub date_axis: &'static str,
    pub count_axis: &'static str,
    pub negative: &'static str,
    pub neutral: &'static str,
    pub positive: &'static str,
    pub search_help: &'static str,
    pub sources: &'static str,
    pub evidence: &'static str,
    pub sentiment: &'static str,
    pub source_name: &'static str,
    pub source_status: &'static str,
    pub source_items: &'static str,
    pub source_last: &'static str,
    pub source_next: &'static str,
    pub source_charset: &'static str,
    pub source_backoff: &'static str,
}

pub const JA: Labels = Labels {
    html_lang: "ja",
    prefix: "",
    other_lang_name: "English",
    other_prefix: "/en",
    dashboard: "ダッシュボード",
    search: "検索",
    tagline: "キャッシュレス決済の障害・不正の兆しを見張る",
    mentions_per_day: "日別の言及数",
    total: "合計",
    search_placeholder: "例: 不正利用 7pay",
    all_services: "すべてのサービス",
    results: "件",
    no_results: "該当する記事・投稿はありません。",
    prev: "前へ",
    next: "次へ",
    from: "開始日",
    to: "終了日",
    show: "表示",
    date_axis: "日付 (日本時間)",
    count_axis: "言及数",
    negative: "ネガティブ",
    neutral: "中立",
    positive: "ポジティブ",
    search_help:
        "スペース区切りは AND、OR で「または」、-語 で除外、\"…\" で語順どおりのフレーズ。title: service:7pay category:fraud sentiment:negative kind:social source:名前 で絞り込み。",
    sources: "ソース",
    evidence: "判定の根拠",
    sentiment: "感情",
    source_name: "名前",
    source_status: "状態",
    source_items: "件数",
    source_last: "最終取得",
    source_next: "次回取得",
    source_charset: "文字コード",
    source_backoff: "再試行待ち:",
};

pub const EN: Labels = Labels {
    html_lang: "en",
    prefix: "/en",
    other_lang_name: "日本語",
    other_prefix: "",
    dashboard: "Dashboard",
    search: "Search",
    tagline: "Early signs of cashless-payment outages and fraud",
    mentions_per_day: "Mentions per day",
    total: "Total",
    search_placeholder: "e.g. 不正利用 7pay",
    all_services: "All services",
    results: "results",
    no_results: "No articles or posts match.",
    prev: "Previous",
    next: "Next",
    from: "From",
    to: "To",
    show: "Show",
    date_axis: "Date (JST)",
    count_axis: "Mentions",
    negative: "negative",
    neutral: "neutral",
    positive: "positive",
    search_help: "Space means AND; OR for either; -word excludes; \"…\" matches a phrase in order; narrow with title: service:7pay category:fraud sentiment:negative kind:social source:name.",
    sources: "Sources",
    evidence: "Why these labels",
    sentiment: "Sentiment",
    source_name: "Name",
    source_status: "Status",
    source_items: "Items",
    source_last: "Last fetch",
    source_next: "Next run",
    source_charset: "Charset",
    source_backoff: "backing off until",
};

impl Labels {
    pub fn facet_title(&self, facet: &str) -> &'static str {
        let ja = self.html_lang == "ja";
        match (facet, ja) {
            ("service", true) => "サービス",
            ("category", true) => "カテゴリ",
            ("sentiment", true) => "感情",
            ("source", true) => "ソース",
            ("kind", true) => "種別",
            ("service", false) => "Service",
            ("category", false) => "Category",
            ("sentiment", false) => "Sentiment",
            ("source", false) => "Source",
            _ => "Kind",
        }
    }
}

impl Lang {
    pub fn labels(self) -> &'static Labels {
        match self {
            Lang::Ja => &JA,
            Lang::En => &EN,
        }
    }
}
