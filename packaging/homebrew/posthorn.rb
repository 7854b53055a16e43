# Homebrew formula for posthorn: builds the source tarball with cargo.
#
# PLACEHOLDERS until the first release is published: `homepage`, `url` and `sha256`
# below do not point at a real tarball yet. On a release, set `url` to the release's
# source tarball and `sha256` to `shasum -a 256` of it; then
#
#   brew install --build-from-source ./packaging/homebrew/posthorn.rb
#   brew test posthorn
#   brew services start posthorn
class Posthorn < Formula
  desc "Conversation-scoped webhook dispatcher for self-hosted conversation platforms"
  homepage "https://example.org/posthorn"
  url "https://example.org/posthorn/posthorn-0.1.0.tar.gz"
  sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  license any_of: ["MIT", "Apache-2.0"]

  depends_on "rust" => :build

  def install
    system "cargo", "install", *std_cargo_args
    # The documented example, with the store and spool moved under Homebrew's var.
    # brew keeps an operator's edited copy on upgrade (the new one lands beside it as
    # config.toml.default).
    inreplace "config.example.toml" do |s|
      s.gsub! "/var/lib/posthorn/posthorn.db", "#{var}/posthorn/posthorn.db"
      s.gsub! "/var/lib/posthorn/spool", "#{var}/posthorn/spool"
    end
    (etc/"posthorn").install "config.example.toml" => "config.toml"
  end

  def post_install
    (var/"posthorn/spool").mkpath
  end

  def caveats
    <<~EOS
      The config is #{etc}/posthorn/config.toml: the documented example (every key
      explained), whose two subscriptions point at example.org. Replace them with your own, then run
        posthorn check-config #{etc}/posthorn/config.toml
        brew services start posthorn
      The platform writes events into #{var}/posthorn/spool.
    EOS
  end

  service do
    run [opt_bin/"posthorn", "serve", "--config", etc/"posthorn/config.toml"]
    keep_alive crashed: true
    working_dir var/"posthorn"
    log_path var/"log/posthorn.log"
    error_log_path var/"log/posthorn.log"
  end

  test do
    assert_match "posthorn #{version}", shell_output("#{bin}/posthorn --version")
    (testpath/"config.toml").write <<~TOML
      [storage]
      path = "#{testpath}/posthorn.db"
      [spool]
      dir = "#{testpath}/spool"

      [[subscription]]
      name = "test"
      url = "http://127.0.0.1:9/hook"
      conversations = ["c-1"]
      events = ["conversation.*"]
      secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    TOML
    assert_match "ok", shell_output("#{bin}/posthorn check-config #{testpath}/config.toml")
    # The config brew installed must be valid too.
    system bin/"posthorn", "check-config", etc/"posthorn/config.toml"
  end
end
